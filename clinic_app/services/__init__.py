"""Use cases, Qt-free, owning their transactions; the only layer the GUI and CLI call."""
