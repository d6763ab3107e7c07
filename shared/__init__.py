"""The project's shared library: settings, logging, event contracts, messaging (outbox, inbox, dead letters),
database."""
