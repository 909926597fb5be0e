/**
 * ES-module entry point for scs.js (see the header of scs.js for why there are two files).
 *
 *   import SCS, {discover, sign, waitForCard, SCSError} from "./scs.mjs";
 *
 * scs.js is a classic script: imported here for its side effect, it sets globalThis.SCS, which this module
 * re-exports. Serve both files with a JavaScript MIME type (text/javascript) from the same directory.
 */
import "./scs.js";

const SCS = globalThis.SCS;
export default SCS;
export const {
  SCSError, HTTPS_URLS, HTTP_URLS, VERSION_FIELDS, defaultUrls, discover, version, sign, waitForCard,
  base64FromText, base64FromBytes, base64FromFile, digestBytes, digestFile, parseList, getBase, setBase,
} = SCS;
