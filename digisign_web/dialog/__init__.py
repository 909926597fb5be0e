"""User dialogs behind one protocol (:class:`~digisign_web.dialog.base.Dialog`): automatic and terminal here,
the browser dialog in ``digisign_web.web.dialog``."""
