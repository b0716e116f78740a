/*
 * testing.h - a minimal harness for the C unit tests run by ctest.
 *
 *   TEST(name) { CHECK(cond); CHECK_EQ_STR(a, b); }
 *   int main(void) { RUN(name); return testing_done(); }
 *
 * Each failed check prints file:line and the expression; the executable exits
 * non-zero when any check failed. The closing line reads "N passed, N failed".
 */
#ifndef DYN_TESTING_H
#define DYN_TESTING_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int testing_checks_failed;
static int testing_tests_passed;
static int testing_tests_failed;
static int testing_current_failed;

#define TEST(name) static void name(void)

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            testing_checks_failed++;                                               \
            testing_current_failed = 1;                                            \
        }                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                  \
    do {                                                                                    \
        long long a_ = (long long)(a), b_ = (long long)(b);                                 \
        if (a_ != b_) {                                                                     \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, \
                    #b, a_, b_);                                                            \
            testing_checks_failed++;                                                        \
            testing_current_failed = 1;                                                     \
        }                                                                                   \
    } while (0)

#define CHECK_EQ_MEM(a, alen, b, blen)                                                           \
    do {                                                                                         \
        size_t al_ = (alen), bl_ = (blen);                                                       \
        if (al_ != bl_ || memcmp((a), (b), al_) != 0) {                                          \
            fprintf(stderr, "%s:%d: %s == %s failed:\n  got:    %.*s\n  wanted: %.*s\n", __FILE__, \
                    __LINE__, #a, #b, (int)al_, (const char *)(a), (int)bl_, (const char *)(b)); \
            testing_checks_failed++;                                                             \
            testing_current_failed = 1;                                                          \
        }                                                                                        \
    } while (0)

#define CHECK_EQ_STR(a, b) CHECK_EQ_MEM((a), strlen(a), (b), strlen(b))

#define RUN(name)                                             \
    do {                                                      \
        testing_current_failed = 0;                           \
        name();                                               \
        if (testing_current_failed) {                         \
            testing_tests_failed++;                           \
            fprintf(stderr, "FAIL %s\n", #name);              \
        } else {                                              \
            testing_tests_passed++;                           \
        }                                                     \
    } while (0)

/*
 * An allocator for out-of-memory tests (struct dyn_allocator shaped): the
 * first testing_alloc_budget allocations succeed, every later one fails until
 * the budget is set again. Frees always work.
 */
static int testing_alloc_budget;
static inline void *testing_failing_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (testing_alloc_budget-- <= 0) return NULL;
    return realloc(ptr, nsize);
}

static inline int testing_done(void) {
    printf("%d passed, %d failed\n", testing_tests_passed, testing_tests_failed);
    return testing_tests_failed ? 1 : 0;
}

#endif
