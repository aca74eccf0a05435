# Build rules for sharedstore/, included by the top-level Makefile.am.
