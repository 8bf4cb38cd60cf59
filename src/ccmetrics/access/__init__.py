"""Who may send data: tokens (``tokens``), where they are kept (``store``), the check every export passes
(``gate``) and the refusal to serve an open receiver beyond this machine (``exposure``)."""
