"""Pure data models shared by every role. No I/O imports here."""
