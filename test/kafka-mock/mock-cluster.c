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
 * Exits when stdin closes, so a dying test runner never leaves it behind.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void reply(const char *fmt, const char *detail) {
  printf(fmt, detail);
  fputc('\n', stdout);
  fflush(stdout);
}

static void reply_err(rd_kafka_resp_err_t err) {
  if (err) reply("err %s", rd_kafka_err2str(err));
  else reply("ok%s", "");
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
  reply("bootstrap %s", rd_kafka_mock_cluster_bootstraps(mc));

  char line[1024];
  while (fgets(line, sizeof line, stdin)) {
    char cmd[64] = {0}, name[512] = {0};
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
    } else {
      line[strcspn(line, "\n")] = 0;
      reply("err unknown command: %s", line);
    }
  }
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(rk);
  return 0;
}
