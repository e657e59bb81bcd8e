/* Fan-outs too large for one loop callback. One PUBLISH to 20,000
 * subscribers is ~15 ms of deliveries: the router delivers the first
 * ROUTER_INLINE_DELIVERIES at once and hands the rest to a job here, which
 * the deferred pass runs a slice per turn, so every other client is served
 * in between.
 *
 * Ordering: the publisher is throttled (not read) from the moment its job
 * starts until every job is done, through the core's congestion count, so
 * its next message cannot overtake this one [MQTT-4.6.0-5]; jobs run in
 * order, and the broker's own messages (wills, $SYS), which have no
 * publisher to hold back, go whole into a job while any is pending. Lifetime: the job holds the message and a reference on each
 * session it still has to reach (session_free leaves a referenced session
 * inert and dead; the slice skips it and frees it). Durability: sessions
 * kept in the store are always delivered inline, so the records a QoS 1/2
 * PUBLISH causes are all written before its PUBACK can go out. */
#include <string.h>

#include "broker/core_priv.h"
#include "broker/mem.h"
#include "broker/message.h"
#include "broker/session.h"

struct fanout_job {
    struct fanout_job *next;
    struct message *msg;
    uint32_t n, pos;
    struct route_target t[];
};

static size_t job_size(uint32_t n)
{
    return sizeof(struct fanout_job) + (size_t)n * sizeof(struct route_target);
}

int fanout__defer(struct core *core, struct message *msg, const struct route_target *t,
                  uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (t[i].session->job_refs >= SESSION_JOB_REFS_MAX)
            return -ERR_NOSPACE; /* that many jobs at once: deliver now */
    struct fanout_job *j = mem_alloc(NULL, job_size(n));
    if (!j)
        return -ERR_NOMEM;
    j->next = NULL;
    j->msg = msg;
    j->n = n;
    j->pos = 0;
    memcpy(j->t, t, (size_t)n * sizeof(*t));
    message_ref(msg);
    for (uint32_t i = 0; i < n; i++)
        t[i].session->job_refs++;
    if (core->fan_tail)
        core->fan_tail->next = j;
    else
        core->fan_head = j;
    core->fan_tail = j;
    core->stats.fanout_jobs++;
    core__congestion_add(core);
    if (core->io.fanout_pending)
        core->io.fanout_pending(core->io.ctx);
    return 0;
}

static void job_end(struct core *core, struct fanout_job *j)
{
    for (uint32_t i = j->pos; i < j->n; i++)
        session_job_release(j->t[i].session);
    core->fan_head = j->next;
    if (!core->fan_head)
        core->fan_tail = NULL;
    message_unref(j->msg);
    mem_free(NULL, j, job_size(j->n));
}

bool core_fanout_run(struct core *core, uint64_t now_ms, uint32_t max)
{
    uint32_t done = 0;
    while (core->fan_head && done < max) {
        struct fanout_job *j = core->fan_head;
        while (j->pos < j->n && done < max) {
            struct route_target *t = &j->t[j->pos++];
            struct session *s = t->session;
            if (!s->dead) {
                session_deliver(s, j->msg, &t->spec, now_ms);
                done++;
            }
            session_job_release(s);
        }
        if (j->pos < j->n)
            break;
        job_end(core, j);
        /* The last job done: throttled publishers may go on (this may run
         * congestion_cleared). */
        core__congestion_remove(core);
    }
    return core->fan_head != NULL;
}

void fanout__free_all(struct core *core)
{
    while (core->fan_head)
        job_end(core, core->fan_head);
}
