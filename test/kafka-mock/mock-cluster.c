/*
 * A real Kafka-protocol cluster for tests: librdkafka's mock cluster
 * (rdkafka_mock.h from Debian's librdkafka-dev) driven by a line protocol on
 * stdin, so the test suite talks to the same wire protocol a production
 * broker would, without a JVM or Docker.
 *
 * Usage: mock-cluster [brokers]   (default 1)
 * Prints "bootstrap <host:port,...>" once the cluster listens, then answers
 * each command line with "ok" or "err <reason>":
 *   topic <name> <partitions>          create a topic (replication 1)
 *   error <apikey> <errcode> <count>   fail the next <count> requests of <apikey>
 *   clear <apikey>                     drop queued errors for <apikey>
 *   topic-error <name> <errcode>       fail requests for one topic (0 clears)
 *   broker-down <id> / broker-up <id>  take a broker offline / back
 *   rtt <id> <ms>                      add latency to a broker
 *   produce <topic> <partition> <codec> <file>
 *                                      produce the messages of <file> with a
 *                                      librdkafka producer (acks=all) whose
 *                                      compression.codec is <codec> (none, gzip,
 *                                      snappy, lz4, zstd); <partition> -1 lets
 *                                      the partitioner choose. Answers "ok <n>"
 *                                      once all are acknowledged.
 *   consume <topic> <min> <timeout_ms> <file>
 *                                      read every partition from its beginning
 *                                      to its end (and at least <min>
 *                                      messages) with a librdkafka consumer
 *                                      (any codec; no group is joined) into
 *                                      <file>; answers "ok <n>" with the
 *                                      number read. Each message: u32
 *                                      partition, u64 offset, then as below.
 * <file> holds messages back to back, each: u32 key length, key, u32 value
 * length, value (big-endian lengths; 0xffffffff for null), u16 header count,
 * then per header u16 name length, name, u32 value length, value.
 * Exits when stdin closes, so a dying test runner never leaves it behind.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/types.h>

static void reply(const char *fmt, const char *detail) {
  printf(fmt, detail);
  fputc('\n', stdout);
  fflush(stdout);
}

static void reply_err(rd_kafka_resp_err_t err) {
  if (err) reply("err %s", rd_kafka_err2str(err));
  else reply("ok%s", "");
}

/* Producers as real clients of the cluster, one per compression codec. */
static const char *CODECS[] = {"none", "gzip", "snappy", "lz4", "zstd"};
#define NCODECS (sizeof CODECS / sizeof CODECS[0])
static rd_kafka_t *producers[NCODECS];
static int delivered_ok, delivered_failed;
static char delivery_error[256];

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  (void)opaque;
  if (m->err) {
    delivered_failed++;
    snprintf(delivery_error, sizeof delivery_error, "%s", rd_kafka_err2str(m->err));
  } else {
    delivered_ok++;
  }
}

static rd_kafka_t *producer_for(const char *codec, const char *bootstrap, char *errstr, size_t errlen) {
  for (size_t i = 0; i < NCODECS; i++) {
    if (strcmp(codec, CODECS[i])) continue;
    if (producers[i]) return producers[i];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, errlen) ||
        rd_kafka_conf_set(conf, "compression.codec", codec, errstr, errlen) ||
        rd_kafka_conf_set(conf, "acks", "all", errstr, errlen) ||
        /* Lingering lets one produce call become one (compressed) batch per partition. */
        rd_kafka_conf_set(conf, "linger.ms", "20", errstr, errlen) ||
        rd_kafka_conf_set(conf, "log_level", "3", errstr, errlen)) {
      rd_kafka_conf_destroy(conf);
      return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    producers[i] = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errlen);
    return producers[i];
  }
  snprintf(errstr, errlen, "unknown codec %s", codec);
  return NULL;
}

static int read_u32(FILE *f, uint32_t *v) {
  unsigned char b[4];
  if (fread(b, 1, 4, f) != 4) return 0;
  *v = ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
  return 1;
}

static int read_u16(FILE *f, uint16_t *v) {
  unsigned char b[2];
  if (fread(b, 1, 2, f) != 2) return 0;
  *v = (uint16_t)((b[0] << 8) | b[1]);
  return 1;
}

/* Reads a length-prefixed field; *out is NULL for a null field. */
static int read_field(FILE *f, char **out, size_t *len) {
  uint32_t n;
  if (!read_u32(f, &n)) return 0;
  *out = NULL;
  *len = 0;
  if (n == 0xffffffffu) return 1;
  *out = malloc(n ? n : 1);
  *len = n;
  return fread(*out, 1, n, f) == n;
}

static void write_u32(FILE *f, uint32_t n) {
  unsigned char b[4] = {n >> 24, n >> 16, n >> 8, n};
  fwrite(b, 1, 4, f);
}

static void write_field(FILE *f, const void *data, size_t len, int is_null) {
  write_u32(f, is_null ? 0xffffffffu : (uint32_t)len);
  if (!is_null) fwrite(data, 1, len, f);
}

/* Reads every partition of a topic from its beginning up to its end (EOF on
 * all partitions, and at least `min` messages), or until timeout_ms. */
static void consume_file(const char *bootstrap, const char *topic, int min, int timeout_ms, const char *path) {
  char errstr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof errstr) ||
      rd_kafka_conf_set(conf, "group.id", "mock-cluster-reader", errstr, sizeof errstr) ||
      rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr) ||
      rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof errstr) ||
      rd_kafka_conf_set(conf, "fetch.wait.max.ms", "50", errstr, sizeof errstr) ||
      rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr)) {
    rd_kafka_conf_destroy(conf);
    reply("err %s", errstr);
    return;
  }
  rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (!c) {
    reply("err %s", errstr);
    return;
  }
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(c, topic, NULL);
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t err = rd_kafka_metadata(c, 0, rkt, &md, 5000);
  int partitions = (!err && md->topic_cnt == 1 && !md->topics[0].err) ? md->topics[0].partition_cnt : 0;
  if (md) rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  if (partitions <= 0) {
    rd_kafka_destroy(c);
    reply("err no metadata for topic %s", topic);
    return;
  }
  rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; p++) rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(c, parts);
  rd_kafka_topic_partition_list_destroy(parts);
  char *at_end = calloc((size_t)partitions, 1);
  FILE *f = fopen(path, "wb");
  int n = 0, ended = 0;
  char failure[300] = {0};
  for (int waited = 0; f && !(ended == partitions && n >= min) && waited < timeout_ms && !failure[0];) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 50);
    if (!m) {
      waited += 50;
      continue;
    }
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (m->partition >= 0 && m->partition < partitions && !at_end[m->partition]) {
        at_end[m->partition] = 1;
        ended++;
      }
    } else if (m->err) {
      snprintf(failure, sizeof failure, "%s", rd_kafka_message_errstr(m));
    } else {
      if (m->partition >= 0 && m->partition < partitions && at_end[m->partition]) {
        at_end[m->partition] = 0; /* more arrived after the end was seen */
        ended--;
      }
      write_u32(f, (uint32_t)m->partition);
      write_u32(f, (uint32_t)((uint64_t)m->offset >> 32));
      write_u32(f, (uint32_t)m->offset);
      write_field(f, m->key, m->key_len, m->key == NULL);
      write_field(f, m->payload, m->len, m->payload == NULL);
      rd_kafka_headers_t *hdrs = NULL;
      size_t cnt = 0;
      if (!rd_kafka_message_headers(m, &hdrs)) cnt = rd_kafka_header_cnt(hdrs);
      unsigned char nh[2] = {cnt >> 8, cnt};
      fwrite(nh, 1, 2, f);
      for (size_t i = 0; i < cnt; i++) {
        const char *name;
        const void *value;
        size_t size;
        rd_kafka_header_get_all(hdrs, i, &name, &value, &size);
        size_t nlen = strlen(name);
        unsigned char nl[2] = {nlen >> 8, nlen};
        fwrite(nl, 1, 2, f);
        fwrite(name, 1, nlen, f);
        write_field(f, value, size, value == NULL);
      }
      n++;
    }
    rd_kafka_message_destroy(m);
  }
  free(at_end);
  if (f) fclose(f);
  rd_kafka_consumer_close(c);
  rd_kafka_destroy(c);
  if (!f) reply("err cannot write %s", path);
  else if (failure[0]) reply("err %s", failure);
  else {
    char out[32];
    snprintf(out, sizeof out, "%d", n);
    reply("ok %s", out);
  }
}

static void produce_file(const char *bootstrap, const char *topic, int partition, const char *codec, const char *path) {
  char errstr[512];
  rd_kafka_t *p = producer_for(codec, bootstrap, errstr, sizeof errstr);
  if (!p) {
    reply("err %s", errstr);
    return;
  }
  FILE *f = fopen(path, "rb");
  if (!f) {
    reply("err cannot open %s", path);
    return;
  }
  delivered_ok = delivered_failed = 0;
  int queued = 0;
  for (;;) {
    char *key, *value;
    size_t klen, vlen;
    int c = fgetc(f);
    if (c == EOF) break;
    ungetc(c, f);
    if (!read_field(f, &key, &klen) || !read_field(f, &value, &vlen)) {
      reply("err truncated message in %s", path);
      fclose(f);
      return;
    }
    uint16_t nh;
    if (!read_u16(f, &nh)) nh = 0;
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(nh ? nh : 1);
    for (uint16_t i = 0; i < nh; i++) {
      uint16_t nlen;
      char name[1024] = {0};
      char *hv;
      size_t hlen;
      if (!read_u16(f, &nlen) || nlen >= sizeof name || fread(name, 1, nlen, f) != nlen || !read_field(f, &hv, &hlen)) {
        reply("err truncated header in %s", path);
        fclose(f);
        return;
      }
      rd_kafka_header_add(hdrs, name, nlen, hv, hv ? (ssize_t)hlen : -1);
      free(hv);
    }
    rd_kafka_resp_err_t err;
    do {
      err = rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, klen),
                              RD_KAFKA_V_VALUE(value, vlen), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) rd_kafka_poll(p, 10);
    } while (err == RD_KAFKA_RESP_ERR__QUEUE_FULL);
    free(key);
    free(value);
    if (err) {
      rd_kafka_headers_destroy(hdrs); /* owned by the message only on success */
      reply("err produce: %s", rd_kafka_err2str(err));
      fclose(f);
      return;
    }
    queued++;
  }
  fclose(f);
  rd_kafka_flush(p, 60000);
  if (delivered_failed || delivered_ok != queued) {
    char msg[400];
    snprintf(msg, sizeof msg, "%d of %d not delivered: %s", queued - delivered_ok, queued, delivery_error);
    reply("err %s", msg);
    return;
  }
  char n[32];
  snprintf(n, sizeof n, "%d", queued);
  reply("ok %s", n);
}

int main(int argc, char **argv) {
  int brokers = argc > 1 ? atoi(argv[1]) : 1;
  if (brokers < 1) brokers = 1;
  char errstr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  /* The handle only hosts the mock cluster's thread; keep it quiet. */
  rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!rk) {
    fprintf(stderr, "rd_kafka_new: %s\n", errstr);
    return 1;
  }
  rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
  if (!mc) {
    fprintf(stderr, "rd_kafka_mock_cluster_new failed\n");
    return 1;
  }
  const char *bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
  reply("bootstrap %s", bootstrap);

  char line[2048];
  while (fgets(line, sizeof line, stdin)) {
    char cmd[64] = {0}, name[512] = {0}, codec[32] = {0}, path[1024] = {0};
    long a = 0, b = 0, c = 0;
    if (sscanf(line, "%63s", cmd) != 1) continue;
    if (!strcmp(cmd, "topic") && sscanf(line, "%*s %511s %ld", name, &a) == 2) {
      reply_err(rd_kafka_mock_topic_create(mc, name, (int)a, 1));
    } else if (!strcmp(cmd, "error") && sscanf(line, "%*s %ld %ld %ld", &a, &b, &c) == 3) {
      size_t n = (size_t)c;
      rd_kafka_resp_err_t *errs = calloc(n ? n : 1, sizeof *errs);
      for (size_t i = 0; i < n; i++) errs[i] = (rd_kafka_resp_err_t)b;
      rd_kafka_mock_push_request_errors_array(mc, (int16_t)a, n, errs);
      free(errs);
      reply_err(RD_KAFKA_RESP_ERR_NO_ERROR);
    } else if (!strcmp(cmd, "clear") && sscanf(line, "%*s %ld", &a) == 1) {
      rd_kafka_mock_clear_request_errors(mc, (int16_t)a);
      reply_err(RD_KAFKA_RESP_ERR_NO_ERROR);
    } else if (!strcmp(cmd, "topic-error") && sscanf(line, "%*s %511s %ld", name, &a) == 2) {
      rd_kafka_mock_topic_set_error(mc, name, (rd_kafka_resp_err_t)a);
      reply_err(RD_KAFKA_RESP_ERR_NO_ERROR);
    } else if (!strcmp(cmd, "broker-down") && sscanf(line, "%*s %ld", &a) == 1) {
      reply_err(rd_kafka_mock_broker_set_down(mc, (int32_t)a));
    } else if (!strcmp(cmd, "broker-up") && sscanf(line, "%*s %ld", &a) == 1) {
      reply_err(rd_kafka_mock_broker_set_up(mc, (int32_t)a));
    } else if (!strcmp(cmd, "rtt") && sscanf(line, "%*s %ld %ld", &a, &b) == 2) {
      reply_err(rd_kafka_mock_broker_set_rtt(mc, (int32_t)a, (int)b));
    } else if (!strcmp(cmd, "consume") && sscanf(line, "%*s %511s %ld %ld %1023s", name, &a, &b, path) == 4) {
      consume_file(bootstrap, name, (int)a, (int)b, path);
    } else if (!strcmp(cmd, "produce") && sscanf(line, "%*s %511s %ld %31s %1023s", name, &a, codec, path) == 4) {
      produce_file(bootstrap, name, (int)a, codec, path);
    } else {
      line[strcspn(line, "\n")] = 0;
      reply("err unknown command: %s", line);
    }
  }
  for (size_t i = 0; i < NCODECS; i++) {
    if (producers[i]) rd_kafka_destroy(producers[i]);
  }
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(rk);
  return 0;
}
