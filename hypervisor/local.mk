# Build rules for hypervisor/, included by the top-level Makefile.am.
