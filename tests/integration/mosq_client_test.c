/* Drives a running broker with libmosquitto (Debian's libmosquitto 2.0):
 * pub/sub at QoS 0/1/2, retained set/clear, will on abnormal close,
 * persistent session with queued QoS 1/2 messages, takeover; each for
 * MQTT v3.1.1 and v5.
 *
 * usage: mosq_client_test HOST PORT
 * Prints one line per check ("ok ..." / "FAIL ...") and exits 1 if any
 * check failed, 2 on a usage or setup error. Every wait is bounded. */
#define _GNU_SOURCE
#include <errno.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_MSGS 64
#define WAIT_MS 5000

static const char *g_host;
static int g_port;
static int g_failures;
static int g_checks;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;

struct msg {
    char topic[128];
    char payload[128];
    int payloadlen;
    int qos;
    bool retain;
};

struct client {
    struct mosquitto *m;
    char id[64];
    int version;
    bool connected;
    int connack_rc; /* -1 until CONNACK */
    bool session_present;
    int disconnects;
    int disconnect_rc;
    int subacks;
    int published; /* on_publish count (QoS 0 sent / QoS 1,2 completed) */
    int nmsgs;
    struct msg msgs[MAX_MSGS];
};

static void check(bool ok, const char *fmt, ...)
{
    va_list ap;
    g_checks++;
    if (!ok)
        g_failures++;
    printf("%s ", ok ? "ok  " : "FAIL");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

/* ---- callbacks (run on the client's network thread) ---- */

static void on_connect(struct mosquitto *m, void *ud, int rc, int flags, const mosquitto_property *p)
{
    struct client *c = ud;
    pthread_mutex_lock(&g_mu);
    c->connack_rc = rc;
    c->connected = (rc == 0);
    c->session_present = flags & 1;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void on_disconnect(struct mosquitto *m, void *ud, int rc, const mosquitto_property *p)
{
    struct client *c = ud;
    pthread_mutex_lock(&g_mu);
    c->connected = false;
    c->disconnects++;
    c->disconnect_rc = rc;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void on_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *granted,
                         const mosquitto_property *p)
{
    struct client *c = ud;
    pthread_mutex_lock(&g_mu);
    c->subacks++;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void on_publish(struct mosquitto *m, void *ud, int mid, int reason, const mosquitto_property *p)
{
    struct client *c = ud;
    pthread_mutex_lock(&g_mu);
    c->published++;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg,
                       const mosquitto_property *p)
{
    struct client *c = ud;
    pthread_mutex_lock(&g_mu);
    if (c->nmsgs < MAX_MSGS) {
        struct msg *d = &c->msgs[c->nmsgs++];
        snprintf(d->topic, sizeof d->topic, "%s", msg->topic);
        d->payloadlen = msg->payloadlen;
        snprintf(d->payload, sizeof d->payload, "%.*s", msg->payloadlen, (const char *)msg->payload);
        d->qos = msg->qos;
        d->retain = msg->retain;
    }
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

/* ---- helpers ---- */

/* Waits until *field >= want (an int inside a client); returns true if reached. */
static bool wait_int(const int *field, int want, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&g_mu);
    int rc = 0;
    while (*field < want && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&g_cv, &g_mu, &ts);
    bool ok = *field >= want;
    pthread_mutex_unlock(&g_mu);
    return ok;
}

static int get_int(const int *field)
{
    pthread_mutex_lock(&g_mu);
    int v = *field;
    pthread_mutex_unlock(&g_mu);
    return v;
}

static void client_free(struct client *c)
{
    if (!c)
        return;
    if (c->m) {
        mosquitto_disconnect(c->m);
        mosquitto_loop_stop(c->m, true);
        mosquitto_destroy(c->m);
    }
    free(c);
}

/* Creates, connects and starts the network thread; waits for CONNACK.
 * session_expiry < 0: none (v5 only). Returns NULL on failure (reported). */
static struct client *client_connect_full(const char *id, int version, bool clean, long session_expiry,
                                          const char *will_topic, const char *will_payload)
{
    struct client *c = calloc(1, sizeof *c);
    snprintf(c->id, sizeof c->id, "%s", id);
    c->version = version;
    c->connack_rc = -1;
    c->m = mosquitto_new(id, clean, c);
    if (!c->m) {
        check(false, "mosquitto_new(%s)", id);
        free(c);
        return NULL;
    }
    mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION,
                         version == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
    mosquitto_connect_v5_callback_set(c->m, on_connect);
    mosquitto_disconnect_v5_callback_set(c->m, on_disconnect);
    mosquitto_subscribe_v5_callback_set(c->m, on_subscribe);
    mosquitto_publish_v5_callback_set(c->m, on_publish);
    mosquitto_message_v5_callback_set(c->m, on_message);
    if (will_topic)
        mosquitto_will_set(c->m, will_topic, (int)strlen(will_payload), will_payload, 1, false);
    mosquitto_property *props = NULL;
    if (version == 5 && session_expiry >= 0)
        mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, (uint32_t)session_expiry);
    int rc = mosquitto_connect_bind_v5(c->m, g_host, g_port, 30, NULL, props);
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_SUCCESS) {
        check(false, "[%s] connect: %s", id, mosquitto_strerror(rc));
        mosquitto_destroy(c->m);
        free(c);
        return NULL;
    }
    mosquitto_loop_start(c->m);
    if (!wait_int(&c->connack_rc, 0, WAIT_MS) || get_int(&c->connack_rc) != 0) {
        check(false, "[%s] CONNACK rc=%d", id, get_int(&c->connack_rc));
        client_free(c);
        return NULL;
    }
    return c;
}

static struct client *client_connect(const char *id, int version)
{
    return client_connect_full(id, version, true, -1, NULL, NULL);
}

static bool subscribe(struct client *c, const char *filter, int qos)
{
    int before = get_int(&c->subacks);
    int rc = mosquitto_subscribe(c->m, NULL, filter, qos);
    return rc == MOSQ_ERR_SUCCESS && wait_int(&c->subacks, before + 1, WAIT_MS);
}

static bool publish(struct client *c, const char *topic, const char *payload, int qos, bool retain)
{
    int before = get_int(&c->published);
    int rc = mosquitto_publish(c->m, NULL, topic, payload ? (int)strlen(payload) : 0, payload, qos, retain);
    return rc == MOSQ_ERR_SUCCESS && wait_int(&c->published, before + 1, WAIT_MS);
}

static int nmsgs(struct client *c)
{
    return get_int(&c->nmsgs);
}

static void disconnect(struct client *c)
{
    int before = get_int(&c->disconnects);
    mosquitto_disconnect(c->m);
    wait_int(&c->disconnects, before + 1, WAIT_MS);
}

/* ---- the behaviours ---- */

static void test_pubsub(int v)
{
    for (int qos = 0; qos <= 2; qos++) {
        char id[64], filter[64], topic[64];
        snprintf(filter, sizeof filter, "lm/v%d/q%d/sensors/#", v, qos);
        snprintf(topic, sizeof topic, "lm/v%d/q%d/sensors/1/temp", v, qos);
        snprintf(id, sizeof id, "lm-sub-v%d-q%d", v, qos);
        struct client *s = client_connect(id, v);
        snprintf(id, sizeof id, "lm-pub-v%d-q%d", v, qos);
        struct client *p = client_connect(id, v);
        if (!s || !p) {
            client_free(s);
            client_free(p);
            continue;
        }
        check(subscribe(s, filter, qos), "v%d qos%d: SUBACK", v, qos);
        check(publish(p, topic, "21.5", qos, false), "v%d qos%d: publish completed", v, qos);
        bool got = wait_int(&s->nmsgs, 1, WAIT_MS);
        check(got && !strcmp(s->msgs[0].topic, topic) && !strcmp(s->msgs[0].payload, "21.5") &&
                  s->msgs[0].qos == qos && !s->msgs[0].retain,
              "v%d qos%d: subscriber received %s 21.5 at qos %d", v, qos, topic, qos);
        usleep(200 * 1000);
        check(nmsgs(s) == 1, "v%d qos%d: exactly one copy delivered (got %d)", v, qos, nmsgs(s));
        client_free(s);
        client_free(p);
    }
}

static void test_retained(int v)
{
    char topic[64], id[64];
    snprintf(topic, sizeof topic, "lm/v%d/retained", v);
    snprintf(id, sizeof id, "lm-rpub-v%d", v);
    struct client *p = client_connect(id, v);
    if (!p)
        return;
    check(publish(p, topic, "kept", 1, true), "v%d retained: publish", v);

    snprintf(id, sizeof id, "lm-rsub1-v%d", v);
    struct client *s = client_connect(id, v);
    if (s) {
        check(subscribe(s, topic, 1), "v%d retained: SUBACK", v);
        bool got = wait_int(&s->nmsgs, 1, WAIT_MS);
        check(got && !strcmp(s->msgs[0].payload, "kept") && s->msgs[0].retain,
              "v%d retained: late subscriber gets it with retain=1", v);
        client_free(s);
    }

    check(publish(p, topic, NULL, 1, true), "v%d retained: empty retained publish", v);
    snprintf(id, sizeof id, "lm-rsub2-v%d", v);
    s = client_connect(id, v);
    if (s) {
        check(subscribe(s, topic, 1), "v%d retained: SUBACK after clear", v);
        usleep(400 * 1000);
        check(nmsgs(s) == 0, "v%d retained: cleared, nothing delivered on subscribe (got %d)", v, nmsgs(s));
        publish(p, topic, "live", 1, false);
        bool got = wait_int(&s->nmsgs, 1, WAIT_MS);
        check(got && !strcmp(s->msgs[0].payload, "live") && !s->msgs[0].retain,
              "v%d retained: live message arrives with retain=0", v);
        client_free(s);
    }
    client_free(p);
}

static volatile int child_connacked;
static void child_on_connect(struct mosquitto *m, void *ud, int rc)
{
    if (rc == 0)
        child_connacked = 1;
}

/* A child process connects with a will and _exit()s without DISCONNECT. */
static void test_will(int v)
{
    char topic[64], id[64];
    snprintf(topic, sizeof topic, "lm/v%d/will", v);
    snprintf(id, sizeof id, "lm-willwatch-v%d", v);
    struct client *w = client_connect(id, v);
    if (!w)
        return;
    check(subscribe(w, topic, 1), "v%d will: watcher SUBACK", v);

    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        /* Fresh library state in the child; no atexit handlers. */
        char cid[64];
        snprintf(cid, sizeof cid, "lm-willer-v%d", v);
        struct mosquitto *m = mosquitto_new(cid, true, NULL);
        if (!m)
            _exit(3);
        mosquitto_connect_callback_set(m, child_on_connect);
        mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, v == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
        mosquitto_will_set(m, topic, 4, "gone", 1, false);
        if (mosquitto_connect(m, g_host, g_port, 30) != MOSQ_ERR_SUCCESS)
            _exit(4);
        /* Run the loop until CONNACK has been handled. */
        for (int i = 0; i < 50 && !child_connacked; i++)
            mosquitto_loop(m, 100, 1);
        if (!child_connacked)
            _exit(5);
        _exit(0); /* socket closed by the kernel: no DISCONNECT */
    }
    int status = 0;
    waitpid(pid, &status, 0);
    check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "v%d will: child connected and exited", v);
    bool got = wait_int(&w->nmsgs, 1, WAIT_MS);
    check(got && !strcmp(w->msgs[0].topic, topic) && !strcmp(w->msgs[0].payload, "gone"),
          "v%d will: published after the connection dropped", v);

    /* Clean disconnect: no will. */
    snprintf(id, sizeof id, "lm-willer2-v%d", v);
    struct client *c = client_connect_full(id, v, true, -1, topic, "should-not-appear");
    if (c) {
        disconnect(c);
        usleep(500 * 1000);
        check(nmsgs(w) == 1, "v%d will: none after a clean DISCONNECT (got %d)", v, nmsgs(w));
        client_free(c);
    }
    client_free(w);
}

static void test_persistent(int v)
{
    char topic[64], id[64];
    snprintf(topic, sizeof topic, "lm/v%d/hub", v);
    snprintf(id, sizeof id, "lm-hub-v%d", v);
    struct client *s = client_connect_full(id, v, false, 3600, NULL, NULL);
    if (!s)
        return;
    check(subscribe(s, topic, 2), "v%d session: SUBACK", v);
    disconnect(s);
    client_free(s);

    struct client *p = client_connect(v == 5 ? "lm-hubpub-v5" : "lm-hubpub-v4", v);
    if (!p)
        return;
    const char *sent[6] = {"m0-q1", "m1-q2", "m2-q1", "m3-q2", "m4-q1", "m5-q2"};
    for (int i = 0; i < 6; i++)
        check(publish(p, topic, sent[i], 1 + i % 2, false), "v%d session: publish %s while away", v, sent[i]);
    client_free(p);

    s = client_connect_full(id, v, false, 3600, NULL, NULL);
    if (!s)
        return;
    check(s->session_present, "v%d session: CONNACK session present", v);
    bool got = wait_int(&s->nmsgs, 6, WAIT_MS);
    /* libmosquitto calls on_message for QoS 2 only after PUBREL, so QoS 1
     * messages overtake QoS 2 ones here: check the order per QoS level (the
     * raw-socket test in test_clients.py checks the order on the wire). */
    bool order = got;
    for (int qos = 1; order && qos <= 2; qos++) {
        int want = qos - 1;
        pthread_mutex_lock(&g_mu);
        for (int i = 0; i < s->nmsgs && i < 6; i++) {
            if (s->msgs[i].qos != qos)
                continue;
            if (want >= 6 || strcmp(s->msgs[i].payload, sent[want]))
                order = false;
            want += 2;
        }
        pthread_mutex_unlock(&g_mu);
        if (want != qos - 1 + 6)
            order = false;
    }
    char seen[512] = "";
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < s->nmsgs && i < 6; i++) {
        size_t len = strlen(seen);
        snprintf(seen + len, sizeof seen - len, " %s/q%d", s->msgs[i].payload, s->msgs[i].qos);
    }
    pthread_mutex_unlock(&g_mu);
    check(order, "v%d session: 6 queued QoS 1/2 messages delivered in order per QoS:%s", v, seen);
    usleep(200 * 1000);
    check(nmsgs(s) == 6, "v%d session: no duplicates (got %d)", v, nmsgs(s));
    /* Clean up: end the session. */
    client_free(s);
    s = client_connect_full(id, v, true, 0, NULL, NULL);
    client_free(s);
}

static void test_takeover(int v)
{
    char id[64];
    snprintf(id, sizeof id, "lm-same-v%d", v);
    struct client *a = client_connect(id, v);
    if (!a)
        return;
    /* Stop a from reconnecting on its own before we look. */
    mosquitto_reconnect_delay_set(a->m, 30, 30, false);
    struct client *b = client_connect(id, v);
    if (b) {
        bool got = wait_int(&a->disconnects, 1, WAIT_MS);
        int rc = get_int(&a->disconnect_rc);
        check(got && rc != 0, "v%d takeover: first client's on_disconnect rc=%d (%s)", v, rc,
              got ? (rc < 128 ? mosquitto_strerror(rc) : mosquitto_reason_string(rc)) : "not called");
        check(b->connected, "v%d takeover: second client stays connected", v);
        client_free(b);
    }
    client_free(a);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s HOST PORT\n", argv[0]);
        return 2;
    }
    g_host = argv[1];
    g_port = atoi(argv[2]);
    signal(SIGPIPE, SIG_IGN);
    mosquitto_lib_init();
    int major, minor, rev;
    mosquitto_lib_version(&major, &minor, &rev);
    printf("# libmosquitto %d.%d.%d against %s:%d\n", major, minor, rev, g_host, g_port);
    for (int v = 4; v <= 5; v++) {
        test_pubsub(v);
        test_retained(v);
        test_will(v);
        test_persistent(v);
        test_takeover(v);
    }
    mosquitto_lib_cleanup();
    printf("# %d checks, %d failed\n", g_checks, g_failures);
    return g_failures ? 1 : 0;
}
