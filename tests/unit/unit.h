/* Shared bits of the unit tests (Check). */
#ifndef VIREO_TESTS_UNIT_H
#define VIREO_TESTS_UNIT_H

#include <check.h>
#include <stdlib.h>

/* Runs one suite and exits with its verdict. */
#define UNIT_MAIN(suite_fn)                                        \
	int main(void)                                             \
	{                                                          \
		SRunner *sr = srunner_create(suite_fn());          \
		int failed;                                        \
		srunner_run_all(sr, CK_NORMAL);                    \
		failed = srunner_ntests_failed(sr);                \
		srunner_free(sr);                                  \
		return failed ? EXIT_FAILURE : EXIT_SUCCESS;       \
	}

#endif
