/* hello: says which CPU it was compiled for and which one it runs on, using zlib. */
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <zlib.h>

#if defined(__x86_64__)
#define COMPILED_FOR "amd64"
#elif defined(__aarch64__)
#define COMPILED_FOR "arm64"
#else
#define COMPILED_FOR "another CPU"
#endif

int main(void)
{
    const char *greeting = "hello, multi-platform world";
    struct utsname machine;

    if (uname(&machine) != 0) {
        perror("uname");
        return 1;
    }
    printf("%s\n", greeting);
    printf("compiled for %s, running on %s, zlib %s, crc32 %08lx\n", COMPILED_FOR,
           machine.machine, zlibVersion(),
           crc32(0L, (const Bytef *)greeting, (uInt)strlen(greeting)));
    return 0;
}
