/*
 * A TEST DOUBLE of a pinpad reader's PKCS#11 module, for digisign-web's tests only.
 *
 * Nothing real can set CKF_PROTECTED_AUTHENTICATION_PATH on this machine (no pinpad reader; SoftHSM2 has no
 * such setting), and SoftHSM2 never counts or locks a user PIN. This module stands in for both: it loads the
 * real module named by $DIGISIGN_TEST_PKCS11_TARGET (default: SoftHSM2), hands out that module's own function
 * list with three entries replaced, and so forwards every other call untouched.
 *
 * $DIGISIGN_TEST_PINPAD_FILE set: the token reports CKF_PROTECTED_AUTHENTICATION_PATH, and C_Login with a NULL
 *   PIN logs in with the PIN read from that file ("what the user typed on the reader"). A missing file is the
 *   user pressing Cancel on the pinpad: CKR_FUNCTION_CANCELED.
 * $DIGISIGN_TEST_PKCS11_LOG set (default with the pinpad: "$DIGISIGN_TEST_PINPAD_FILE.log"): each C_Login appends
 *   one line "login user=<CKU_*> pin=null|given rv=0x<CKR_*>" (never the PIN itself), so a test can prove that
 *   the caller passed no PIN, or count the context-specific logins that CKA_ALWAYS_AUTHENTICATE needs.
 * $DIGISIGN_TEST_PIN_TRIES_FILE set: a card-like user PIN retry counter of 3 kept in that file. A wrong PIN
 *   (CKR_PIN_INCORRECT from the real module) takes one try, a right one restores all three; no tries left is
 *   CKF_USER_PIN_LOCKED and CKR_PIN_LOCKED without asking the real module. C_GetTokenInfo reports
 *   CKF_USER_PIN_COUNT_LOW / CKF_USER_PIN_FINAL_TRY / CKF_USER_PIN_LOCKED from the counter.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#define DEFAULT_TARGET "/usr/lib/softhsm/libsofthsm2.so"
#define MAX_TRIES 3

static CK_FUNCTION_LIST shim;
static CK_FUNCTION_LIST_PTR target;
static CK_C_GetTokenInfo target_get_token_info;
static CK_C_Login target_login;

static int read_tries(const char *path)
{
    FILE *f = fopen(path, "r");
    int tries = MAX_TRIES;
    if (f == NULL)
        return MAX_TRIES;
    if (fscanf(f, "%d", &tries) != 1)
        tries = MAX_TRIES;
    fclose(f);
    return tries < 0 ? 0 : tries;
}

static void write_tries(const char *path, int tries)
{
    FILE *f = fopen(path, "w");
    if (f != NULL) {
        fprintf(f, "%d\n", tries);
        fclose(f);
    }
}

static void log_login(const char *pinpad, CK_USER_TYPE user, int with_pin, CK_RV rv)
{
    char path[4096];
    const char *log = getenv("DIGISIGN_TEST_PKCS11_LOG");
    FILE *f;
    if (log != NULL) {
        if (snprintf(path, sizeof path, "%s", log) >= (int)sizeof path)
            return;
    } else if (pinpad == NULL || snprintf(path, sizeof path, "%s.log", pinpad) >= (int)sizeof path) {
        return;
    }
    f = fopen(path, "a");
    if (f != NULL) {
        fprintf(f, "login user=%lu pin=%s rv=0x%lx\n", (unsigned long)user, with_pin ? "given" : "null",
                (unsigned long)rv);
        fclose(f);
    }
}

static CK_RV shim_get_token_info(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
    const char *tries_file = getenv("DIGISIGN_TEST_PIN_TRIES_FILE");
    CK_RV rv = target_get_token_info(slot, info);
    if (rv != CKR_OK || info == NULL)
        return rv;
    if (getenv("DIGISIGN_TEST_PINPAD_FILE") != NULL)
        info->flags |= CKF_PROTECTED_AUTHENTICATION_PATH;
    if (tries_file != NULL) {
        int tries = read_tries(tries_file);
        info->flags &= ~(CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED);
        if (tries == 0)
            info->flags |= CKF_USER_PIN_LOCKED;
        else if (tries < MAX_TRIES)
            info->flags |= CKF_USER_PIN_COUNT_LOW | (tries == 1 ? CKF_USER_PIN_FINAL_TRY : 0);
    }
    return CKR_OK;
}

static CK_RV shim_login(CK_SESSION_HANDLE session, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len)
{
    const char *pinpad = getenv("DIGISIGN_TEST_PINPAD_FILE");
    const char *tries_file = getenv("DIGISIGN_TEST_PIN_TRIES_FILE");
    char typed[256];
    int counted = tries_file != NULL && user != CKU_SO;
    CK_RV rv;

    if (counted && read_tries(tries_file) == 0) {
        rv = CKR_PIN_LOCKED;
        log_login(pinpad, user, pin != NULL, rv);
        return rv;
    }
    if (pinpad != NULL && pin == NULL) {
        FILE *f = fopen(pinpad, "r");
        size_t n;
        if (f == NULL) {
            log_login(pinpad, user, 0, CKR_FUNCTION_CANCELED);
            return CKR_FUNCTION_CANCELED;
        }
        n = fread(typed, 1, sizeof typed - 1, f);
        fclose(f);
        while (n > 0 && (typed[n - 1] == '\n' || typed[n - 1] == '\r'))
            n--;
        typed[n] = '\0';
        rv = target_login(session, user, (CK_UTF8CHAR_PTR)typed, (CK_ULONG)n);
        memset(typed, 0, sizeof typed);
    } else {
        rv = target_login(session, user, pin, pin_len);
    }
    log_login(pinpad, user, pin != NULL, rv);
    if (counted) {
        if (rv == CKR_PIN_INCORRECT)
            write_tries(tries_file, read_tries(tries_file) - 1);
        else if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)
            write_tries(tries_file, MAX_TRIES);
    }
    return rv;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    if (list == NULL)
        return CKR_ARGUMENTS_BAD;
    if (target == NULL) {
        const char *path = getenv("DIGISIGN_TEST_PKCS11_TARGET");
        CK_C_GetFunctionList get;
        CK_RV rv;
        void *handle = dlopen(path != NULL ? path : DEFAULT_TARGET, RTLD_NOW | RTLD_LOCAL);
        if (handle == NULL)
            return CKR_GENERAL_ERROR;
        get = (CK_C_GetFunctionList)dlsym(handle, "C_GetFunctionList");
        if (get == NULL)
            return CKR_GENERAL_ERROR;
        rv = get(&target);
        if (rv != CKR_OK)
            return rv;
        shim = *target;
        target_get_token_info = target->C_GetTokenInfo;
        target_login = target->C_Login;
        shim.C_GetFunctionList = C_GetFunctionList;
        shim.C_GetTokenInfo = shim_get_token_info;
        shim.C_Login = shim_login;
    }
    *list = &shim;
    return CKR_OK;
}
