/* STREAMDIFF_API marks what libstreamdiff exports. The shared library is built with hidden
 * visibility, so only names carrying this attribute are visible to its users; in the static
 * library the attribute changes nothing. */
#ifndef STREAMDIFF_EXPORT_H_
#define STREAMDIFF_EXPORT_H_

#if defined(__GNUC__) || defined(__clang__)
#define STREAMDIFF_API __attribute__((visibility("default")))
#else
#define STREAMDIFF_API
#endif

#endif /* STREAMDIFF_EXPORT_H_ */
