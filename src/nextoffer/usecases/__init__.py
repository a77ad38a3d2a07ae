"""One function per thing a user does; every entry point calls these, never a copy."""
