/* TLS without sockets: cipher suite names in three spellings, subject DNs
 * printed as mosquitto (OpenSSL RFC 2253) prints them, and the start-up
 * errors of a listener's TLS settings (missing files, TLS 1.3, unknown
 * suites, PSK without psk_file). Handshakes with real clients are in
 * tests/integration/test_tls.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <mbedtls/asn1.h>
#include <mbedtls/oid.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/x509.h>

#include "broker/config.h"
#include "broker/mem.h"
#include "broker/tls.h"

/* ---- cipher suites ---- */

static void test_cipher_names(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int id;
    } ok[] = {
        {"ECDHE-ECDSA-AES128-GCM-SHA256", MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
        {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
        {"TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256", MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
        {"ecdhe-ecdsa-aes128-gcm-sha256", MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
        {"ECDHE-RSA-AES256-GCM-SHA384", MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384},
        {"ECDHE-RSA-AES256-SHA384", MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384},
        {"ECDHE-RSA-AES128-SHA", MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA},
        {"AES128-GCM-SHA256", MBEDTLS_TLS_RSA_WITH_AES_128_GCM_SHA256},
        {"DHE-RSA-AES256-GCM-SHA384", MBEDTLS_TLS_DHE_RSA_WITH_AES_256_GCM_SHA384},
        {"ECDHE-RSA-CHACHA20-POLY1305", MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
        {"ECDHE-ECDSA-CHACHA20-POLY1305", MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
        {"ECDHE-ECDSA-AES128-CCM8", MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8},
        {"ECDHE-ECDSA-AES256-CCM", MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_CCM},
        {"PSK-AES128-CBC-SHA256", MBEDTLS_TLS_PSK_WITH_AES_128_CBC_SHA256},
        {"PSK-AES128-GCM-SHA256", MBEDTLS_TLS_PSK_WITH_AES_128_GCM_SHA256},
        {"ECDHE-PSK-AES128-CBC-SHA256", MBEDTLS_TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256},
        {"PSK-CHACHA20-POLY1305", MBEDTLS_TLS_PSK_WITH_CHACHA20_POLY1305_SHA256},
        {"ECDHE-ECDSA-CAMELLIA128-SHA256", MBEDTLS_TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int id = tls_ciphersuite_id(ok[i].name);
        if (id != ok[i].id)
            fail_msg("%s: got 0x%04x, want 0x%04x", ok[i].name, id, ok[i].id);
    }
    /* OpenSSL keywords, TLS 1.3 suites, suites mbedTLS leaves out by
     * default (RC4, 3DES, NULL), nonsense. */
    static const char *const bad[] = {"HIGH", "!aNULL", "TLS_AES_128_GCM_SHA256",
                                      "TLS_CHACHA20_POLY1305_SHA256", "RC4-SHA", "DES-CBC3-SHA",
                                      "NULL-SHA256", "", "-", "ECDHE", "AES999-GCM-SHA256",
                                      "ECDHE-ECDSA-AES128-GCM-SHA256-EXTRA-EXTRA-EXTRA-EXTRA-"
                                      "EXTRA-EXTRA-EXTRA-EXTRA-EXTRA-EXTRA-EXTRA"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (tls_ciphersuite_id(bad[i]))
            fail_msg("'%s' was accepted", bad[i]);
}

/* ---- subject DN ---- */

#define OIDBUF(o) {.tag = MBEDTLS_ASN1_OID, .len = sizeof(o) - 1, .p = (unsigned char *)(o)}
#define VAL(t, s) {.tag = (t), .len = sizeof(s) - 1, .p = (unsigned char *)(s)}

static void test_subject_rfc2253(void **state)
{
    (void)state;
    char out[256];
    /* C=GB, O=Loopbot Test, Inc., OU=gateways, CN=device-1 (certificate
     * order); openssl x509 -nameopt RFC2253 prints the reverse. */
    mbedtls_x509_name n4 = {.oid = OIDBUF(MBEDTLS_OID_AT_CN),
                            .val = VAL(MBEDTLS_ASN1_UTF8_STRING, "device-1")};
    mbedtls_x509_name n3 = {.oid = OIDBUF(MBEDTLS_OID_AT_ORG_UNIT),
                            .val = VAL(MBEDTLS_ASN1_UTF8_STRING, "gateways"), .next = &n4};
    mbedtls_x509_name n2 = {.oid = OIDBUF(MBEDTLS_OID_AT_ORGANIZATION),
                            .val = VAL(MBEDTLS_ASN1_UTF8_STRING, "Loopbot Test, Inc."),
                            .next = &n3};
    mbedtls_x509_name n1 = {.oid = OIDBUF(MBEDTLS_OID_AT_COUNTRY),
                            .val = VAL(MBEDTLS_ASN1_PRINTABLE_STRING, "GB"), .next = &n2};
    assert_int_equal(tls_subject_rfc2253(&n1, out, sizeof(out)), 50);
    assert_string_equal(out, "CN=device-1,OU=gateways,O=Loopbot Test\\, Inc.,C=GB");
    assert_int_equal(tls_subject_rfc2253(&n1, out, 50), -1); /* no room for the NUL */
    assert_int_equal(tls_subject_rfc2253(&n1, out, 51), 50);

    /* O=x, then the multi-valued RDN CN=a+UID=b: "UID=b+CN=a,O=x". */
    mbedtls_x509_name m3 = {.oid = OIDBUF("\x09\x92\x26\x89\x93\xF2\x2C\x64\x01\x01"),
                            .val = VAL(MBEDTLS_ASN1_UTF8_STRING, "b")};
    mbedtls_x509_name m2 = {.oid = OIDBUF(MBEDTLS_OID_AT_CN),
                            .val = VAL(MBEDTLS_ASN1_UTF8_STRING, "a"), .next = &m3,
                            .next_merged = 1};
    mbedtls_x509_name m1 = {.oid = OIDBUF(MBEDTLS_OID_AT_ORGANIZATION),
                            .val = VAL(MBEDTLS_ASN1_UTF8_STRING, "x"), .next = &m2};
    assert_true(tls_subject_rfc2253(&m1, out, sizeof(out)) > 0);
    assert_string_equal(out, "UID=b+CN=a,O=x");

    /* Escapes: leading space and '#', specials, trailing space, UTF-8
     * bytes and controls as \XX (OpenSSL's ESC_2253|ESC_CTRL|ESC_MSB). */
    mbedtls_x509_name e1 = {.oid = OIDBUF(MBEDTLS_OID_AT_CN),
                            .val = VAL(MBEDTLS_ASN1_UTF8_STRING, " #a;b<c>\"d\\e+f,g\x01\xC3\xA9 ")};
    assert_true(tls_subject_rfc2253(&e1, out, sizeof(out)) > 0);
    assert_string_equal(out, "CN=\\ #a\\;b\\<c\\>\\\"d\\\\e\\+f\\,g\\01\\C3\\A9\\ ");

    /* BMPString "é" is converted to UTF-8 first; an attribute OpenSSL
     * would not know is dumped as OID=#DER. */
    mbedtls_x509_name b2 = {.oid = OIDBUF("\x2B\x06\x01\x04\x01\x82\x37\x01"),
                            .val = VAL(MBEDTLS_ASN1_UTF8_STRING, "z")};
    mbedtls_x509_name b1 = {.oid = OIDBUF(MBEDTLS_OID_AT_CN),
                            .val = VAL(MBEDTLS_ASN1_BMP_STRING, "\x00\xE9"), .next = &b2};
    assert_true(tls_subject_rfc2253(&b1, out, sizeof(out)) > 0);
    assert_string_equal(out, "1.3.6.1.4.1.311.1=#0C017A,CN=\\C3\\A9");
}

/* ---- listener settings ---- */

static char dir[] = "/tmp/loopbot-test-tls-XXXXXX";

static const char *path(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
    return buf[k];
}

static void write_file(const char *name, const char *text)
{
    FILE *f = fopen(path(name), "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    write_file("psk.txt", "sensor-1:00c0ffee\n");
    write_file("notacert.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    static const char *const f[] = {"psk.txt", "notacert.pem"};
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
        unlink(path(f[i]));
    rmdir(dir);
    return 0;
}

static struct listener_config lc_psk(void)
{
    struct listener_config lc;
    memset(&lc, 0, sizeof(lc));
    lc.port = 8883;
    lc.line = 7;
    lc.tls.psk_hint = (char *)"hint";
    return lc;
}

static void test_wanted(void **state)
{
    (void)state;
    struct listener_config lc;
    memset(&lc, 0, sizeof(lc));
    assert_false(tls_wanted(&lc));
    lc.tls.cafile = (char *)"ca.crt"; /* a CA alone does not make a TLS listener */
    assert_false(tls_wanted(&lc));
    lc.tls.certfile = (char *)"server.crt";
    assert_true(tls_wanted(&lc));
    memset(&lc, 0, sizeof(lc));
    lc.tls.psk_hint = (char *)"h";
    assert_true(tls_wanted(&lc));
}

static void test_psk_listener(void **state)
{
    (void)state;
    size_t before = mem_used_total();
    struct listener_config lc = lc_psk();
    struct tls_ctx *ctx = tls_ctx_new(&lc, path("psk.txt"));
    assert_non_null(ctx);
    /* Two contexts share the one DRBG. */
    struct tls_ctx *ctx2 = tls_ctx_new(&lc, path("psk.txt"));
    assert_non_null(ctx2);
    tls_ctx_free(ctx);
    tls_ctx_free(ctx2);
    tls_ctx_free(NULL);
    assert_int_equal(mem_used_total(), before);

    lc.tls.ciphers = (char *)"PSK-AES128-GCM-SHA256:TLS_PSK_WITH_AES_256_GCM_SHA384";
    assert_non_null(ctx = tls_ctx_new(&lc, path("psk.txt")));
    tls_ctx_free(ctx);
    lc.tls.tls_version = (char *)"tlsv1.2";
    assert_non_null(ctx = tls_ctx_new(&lc, path("psk.txt")));
    tls_ctx_free(ctx);
    assert_int_equal(mem_used_total(), before);
}

static void test_bad_settings(void **state)
{
    (void)state;
    size_t before = mem_used_total();
    struct listener_config lc = lc_psk();
    /* psk_hint without a psk_file (the auth module parses the file) */
    assert_null(tls_ctx_new(&lc, NULL));
    /* versions and suites */
    lc.tls.tls_version = (char *)"tlsv1.3";
    assert_null(tls_ctx_new(&lc, path("psk.txt")));
    lc.tls.tls_version = (char *)"sslv3";
    assert_null(tls_ctx_new(&lc, path("psk.txt")));
    lc.tls.tls_version = NULL;
    lc.tls.ciphers = (char *)"PSK-AES128-GCM-SHA256:HIGH";
    assert_null(tls_ctx_new(&lc, path("psk.txt")));
    lc.tls.ciphers = (char *)":::";
    assert_null(tls_ctx_new(&lc, path("psk.txt")));
    lc.tls.ciphers = NULL;
    /* certificates */
    lc.tls.certfile = (char *)path("missing.crt");
    assert_null(tls_ctx_new(&lc, path("psk.txt")));
    lc.tls.keyfile = (char *)path("missing.key");
    assert_null(tls_ctx_new(&lc, path("psk.txt")));
    lc.tls.certfile = (char *)path("notacert.pem");
    assert_null(tls_ctx_new(&lc, path("psk.txt")));
    lc.tls.certfile = lc.tls.keyfile = NULL;
    lc.tls.require_certificate = true; /* without a CA */
    assert_null(tls_ctx_new(&lc, path("psk.txt")));
    lc.tls.cafile = (char *)path("notacert.pem");
    assert_null(tls_ctx_new(&lc, path("psk.txt")));
    lc.tls.cafile = NULL;
    lc.tls.require_certificate = false;
    lc.tls.crlfile = (char *)path("missing.crl"); /* a CRL without a CA */
    assert_null(tls_ctx_new(&lc, path("psk.txt")));
    lc.tls.crlfile = NULL;
    lc.tls.psk_hint = NULL;
    lc.tls.use_identity_as_username = true; /* with nothing to identify */
    assert_null(tls_ctx_new(&lc, path("psk.txt")));
    assert_int_equal(mem_used_total(), before);
}

static void test_allocation_failures(void **state)
{
    (void)state;
    struct listener_config lc = lc_psk();
    size_t before = mem_used_total();
    mem_fail_nth(0);
    struct tls_ctx *ctx = tls_ctx_new(&lc, path("psk.txt"));
    unsigned long n = mem_fail_nth(0);
    assert_non_null(ctx);
    tls_ctx_free(ctx);
    for (unsigned long i = 1; i <= n; i++) {
        mem_fail_nth(i);
        ctx = tls_ctx_new(&lc, path("psk.txt"));
        mem_fail_nth(0);
        tls_ctx_free(ctx);
        assert_int_equal(mem_used_total(), before);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cipher_names),
        cmocka_unit_test(test_subject_rfc2253),
        cmocka_unit_test(test_wanted),
        cmocka_unit_test(test_psk_listener),
        cmocka_unit_test(test_bad_settings),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
