"""User dialogs behind one protocol (:class:`~digisign_web.dialog.protocol.Dialog`): automatic (auto.py) and
terminal (terminal.py) here, the browser dialog in ``digisign_web.web.dialog``."""
