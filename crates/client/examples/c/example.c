/*
 * A minimal C program on the Leasehold client library: connect, take one license, show the
 * client's status, give the license back. Built and run by the client crate's `ffi` test.
 *
 *   usage: example SERVERS FEATURES FEATURE
 *     SERVERS   the license servers, "host[:port]" separated by ';', the primary first
 *     FEATURES  every feature the program uses, comma-separated ("tts,asr.en-US")
 *     FEATURE   the one to acquire
 *
 * Prints the status JSON on stdout while the license is held. Exit status: 0 when the
 * license was granted, the LEASEHOLD_DENIED_* code (1..7) when it was refused, 64 and up on
 * other errors.
 *
 *   cc -I crates/client/include crates/client/examples/c/example.c \
 *      -L target/debug -lleasehold_client -Wl,-rpath,target/debug -o example
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <time.h>

#include "leasehold.h"

/* The release date of this product, for the server's maintenance check. */
#define PRODUCT_RELEASE "2026-10-01"

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s SERVERS FEATURES FEATURE\n", argv[0]);
        return 64;
    }
    const char *servers = argv[1], *features = argv[2], *feature = argv[3];

    char err[256];
    LeaseholdClient *client =
        leasehold_client_new_named(servers, NULL, features, PRODUCT_RELEASE,
                                   NULL /* client key: LEASEHOLD_CLIENT_KEY or _FILE */,
                                   NULL /* name: LEASEHOLD_CLIENT_NAME or hostname/program[pid] */,
                                   0, 0, 0 /* default timings */, err, sizeof err);
    if (client == NULL) {
        fprintf(stderr, "cannot create the license client: %s\n", err);
        return 65;
    }

    /* At start-up only: acquire itself never waits for the network. */
    int32_t rc = leasehold_wait_connected(client, 10000);
    if (rc == LEASEHOLD_OK) {
        LeaseholdLicense license;
        rc = leasehold_acquire(client, feature, &license);
        /* A full quota is momentary: the client has already asked the server for more. */
        for (int i = 0; rc == LEASEHOLD_DENIED_QUOTA_EXHAUSTED && i < 50; i++) {
            sleep_ms(100);
            rc = leasehold_acquire(client, feature, &license);
        }
        if (rc == LEASEHOLD_OK) {
            fprintf(stderr, "license granted: %s\n", feature);
            char *status = leasehold_status_json(client);
            if (status != NULL) {
                puts(status);
                leasehold_string_free(status);
            }
            int32_t released = leasehold_release(client, license);
            if (released != LEASEHOLD_OK) {
                fprintf(stderr, "release failed: %s\n", leasehold_denial_name(released));
                rc = 66;
            }
        }
    }
    if (rc > 0 && rc < 64) {
        fprintf(stderr, "license denied: %s (%d)\n", leasehold_denial_name(rc), (int)rc);
    } else if (rc < 0) {
        fprintf(stderr, "error: %s\n", leasehold_denial_name(rc));
        rc = 67;
    }

    /* Gives the quota back to the server; after every other call on the client. */
    leasehold_client_free(client);
    return (int)rc;
}
