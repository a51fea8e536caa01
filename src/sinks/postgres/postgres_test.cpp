// The pure parts of the PostgreSQL sink: its table's defaults and errors, the URL and libpq
// options, table templates, the SQL it runs, the binary COPY rows it sends, what an SQLSTATE
// means and when a refused batch is isolated. The sink against a real server is tested in
// test/sinks/postgres_test.py.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>

#include "pipeline/registry.h"
#include "sinks/postgres/pg_connection.h"
#include "sinks/postgres/postgres_config.h"
#include "sinks/postgres/postgres_sql.h"
#include "sinks/postgres/postgres_writer.h"

namespace tianhe::sinks::postgres {
namespace {

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

std::string param(const ConnectSpec& s, std::string_view key) {
  for (const auto& [k, v] : s.params) {
    if (k == key) return v;
  }
  return "<absent>";
}

TEST(PostgresConfig, DefaultsAndOwnKeysAfterTheCommonOnes) {
  const config::ConfigTable& t = config_table();
  EXPECT_EQ(t.section.header, "sinks.postgres");
  EXPECT_TRUE(t.instances);
  EXPECT_EQ(t.section.fields[1].key, "url");
  EXPECT_EQ(t.section.fields[1].default_text, "\"postgresql://tianhe@127.0.0.1:5432/tianhe\"");
  const size_t n = t.section.fields.size();
  EXPECT_EQ(t.section.fields[n - 2].key, "schema");
  EXPECT_EQ(t.section.fields[n - 1].key, "table");
  std::any a = t.make_default();
  const auto& c = std::any_cast<const PostgresConfig&>(a);
  EXPECT_FALSE(c.sink.enabled);
  EXPECT_EQ(c.sink.url, "postgresql://tianhe@127.0.0.1:5432/tianhe");
  EXPECT_EQ(c.schema, "public");
  EXPECT_EQ(c.table, "{model}");
  config::Parsed p;
  p.s = "{tenant}_{model}";
  t.section.set(t.target(a), n - 1, p);
  EXPECT_EQ(std::any_cast<const PostgresConfig&>(a).table, "{tenant}_{model}");
}

TEST(PostgresConfig, ChecksOfSchemaAndTable) {
  const config::ConfigTable& t = config_table();
  const size_t n = t.section.fields.size();
  config::Parsed p;
  p.s = "";
  EXPECT_NE(t.section.fields[n - 2].check(p), "");
  p.s = std::string(64, 's');
  EXPECT_NE(t.section.fields[n - 2].check(p), "");
  p.s = "telemetry";
  EXPECT_EQ(t.section.fields[n - 2].check(p), "");
  EXPECT_EQ(check_table_template("{model}"), "");
  EXPECT_EQ(check_table_template("t_{tenant}_{model}"), "");
  EXPECT_TRUE(contains(check_table_template("{device}"), "{model} and {tenant}"));
  EXPECT_NE(check_table_template("a}"), "");
  EXPECT_NE(check_table_template(""), "");
  EXPECT_EQ(table_name("{tenant}_{model}", "acme", "env"), "acme_env");
  EXPECT_EQ(table_name("readings", "acme", "env"), "readings");
}

TEST(PostgresUrl, BecomesLibpqParameters) {
  PostgresConfig c;
  c.sink.url =
      "postgres://gw:s%40cret@db.example:5433/telemetry?sslmode=require&"
      "application_name=edge%201";
  auto s = connect_spec(c, "sinks.postgres");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(param(*s, "host"), "db.example");
  EXPECT_EQ(param(*s, "port"), "5433");
  EXPECT_EQ(param(*s, "dbname"), "telemetry");
  EXPECT_EQ(param(*s, "user"), "gw");
  EXPECT_EQ(param(*s, "password"), "s@cret");
  EXPECT_EQ(param(*s, "sslmode"), "require");
  EXPECT_EQ(param(*s, "application_name"), "edge 1");
  EXPECT_EQ(param(*s, "connect_timeout"), "10");
  EXPECT_EQ(s->where, "gw@db.example:5433/telemetry");  // never the password
  c.sink.url = "postgresql://tianhe@127.0.0.1/tianhe";
  auto d = connect_spec(c, "sinks.postgres");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(param(*d, "port"), "5432");
  EXPECT_EQ(param(*d, "password"), "<absent>");
}

TEST(PostgresUrl, ErrorsNameTheKeyAndTheFix) {
  PostgresConfig c;
  const auto error = [&](std::string url) {
    c.sink.url = std::move(url);
    auto s = connect_spec(c, "sinks.postgres.archive");
    return s.ok() ? std::string() : s.error().message;
  };
  EXPECT_TRUE(contains(error("mysql://u@h/db"), "sinks.postgres.archive.url"));
  EXPECT_TRUE(contains(error("postgresql://h:5432/db"), "no user"));
  EXPECT_TRUE(contains(error("postgresql://u@h:5432"), "no database"));
  EXPECT_TRUE(contains(error("postgresql://u@h/db?nosuchoption=1"), "not a libpq"));
  EXPECT_TRUE(contains(error("postgresql://u@h/db?password=x"), "part of the URL"));
  EXPECT_TRUE(contains(error("postgresql://u@h/db?sslmode"), "name=value"));
  c.sink.url = "postgresql://u@h/db";
  c.sink.password_env = "TIANHE_PG_TEST_UNSET";
  ::unsetenv("TIANHE_PG_TEST_UNSET");
  auto s = connect_spec(c, "sinks.postgres");
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(contains(s.error().message, "sinks.postgres.password_env"));
  ::setenv("TIANHE_PG_TEST_UNSET", "from-env", 1);
  auto ok = connect_spec(c, "sinks.postgres");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(param(*ok, "password"), "from-env");
  ::unsetenv("TIANHE_PG_TEST_UNSET");
}

pipeline::Model env_model(bool allow_unknown = false) {
  return pipeline::Model("env_sensor",
                         {{.name = "temperature", .type = core::ValueType::kDouble},
                          {.name = "battery_mv", .type = core::ValueType::kInt64},
                          {.name = "door_open", .type = core::ValueType::kBool},
                          {.name = "firmware", .type = core::ValueType::kString}},
                         allow_unknown);
}

TEST(PostgresLayout, OneTypedColumnPerMetricAfterTheRecord) {
  const TableLayout t = table_layout(env_model(), "public", "env_sensor");
  EXPECT_EQ(t.qualified(), "\"public\".\"env_sensor\"");
  EXPECT_EQ(create_table_sql(t),
            "CREATE TABLE IF NOT EXISTS \"public\".\"env_sensor\" (\"tenant\" text NOT NULL, "
            "\"device_id\" bigint NOT NULL, \"seq\" bigint NOT NULL, \"time_ns\" bigint NOT "
            "NULL, \"time\" timestamptz NOT NULL, \"received_ns\" bigint NOT NULL, \"protocol\" "
            "text NOT NULL, \"traceparent\" text NULL, \"temperature\" double precision NULL, "
            "\"battery_mv\" bigint NULL, \"door_open\" boolean NULL, \"firmware\" text NULL, "
            "PRIMARY KEY (time_ns, device_id, seq))");
  const TableLayout x = table_layout(env_model(true), "s", "t");
  EXPECT_TRUE(contains(create_table_sql(x), "\"firmware\" text NULL, extra jsonb NULL, PRIMARY"));
  EXPECT_EQ(create_staging_sql(table_layout(env_model(), "public", "e"), "tianhe_stage_0"),
            "CREATE TEMP TABLE IF NOT EXISTS \"tianhe_stage_0\" (ord integer, \"tenant\" text, "
            "\"device_id\" bigint, \"seq\" bigint, \"time_ns\" bigint, \"time\" timestamptz, "
            "\"received_ns\" bigint, \"protocol\" text, \"traceparent\" text, \"temperature\" "
            "double precision, \"battery_mv\" bigint, \"door_open\" boolean, \"firmware\" text) "
            "ON COMMIT DELETE ROWS");
  EXPECT_EQ(sql_type(core::ValueType::kInt64), "bigint");
  EXPECT_EQ(quote_ident("we\"ird"), "\"we\"\"ird\"");
  EXPECT_EQ(quote_literal("it's"), "'it''s'");
}

TEST(PostgresLayout, MigrationAddsOnlyMissingColumnsAndKeepsAdoptedTypes) {
  const TableLayout t = table_layout(env_model(), "public", "env_sensor");
  std::set<std::string> existing(std::begin(kFixedColumns), std::end(kFixedColumns));
  existing.insert({"temperature", "battery_mv", "door_open"});  // battery_mv may be smallint
  auto add = add_column_sql(t, existing);
  ASSERT_EQ(add.size(), 1u);
  EXPECT_EQ(add[0],
            "ALTER TABLE \"public\".\"env_sensor\" ADD COLUMN IF NOT EXISTS \"firmware\" text");
  existing.insert("firmware");
  EXPECT_TRUE(add_column_sql(t, existing).empty());
}

TEST(PostgresLayout, InsertFromStagingAndTheCursorUpsert) {
  const TableLayout t =
      table_layout(pipeline::Model("m", {{.name = "v", .type = core::ValueType::kDouble}}, false),
                   "public", "m");
  const std::string cols =
      "\"tenant\", \"device_id\", \"seq\", \"time_ns\", \"time\", \"received_ns\", "
      "\"protocol\", \"traceparent\", \"v\"";
  EXPECT_EQ(insert_sql(t, "st"), "INSERT INTO \"public\".\"m\" (" + cols + ") SELECT " + cols +
                                     " FROM \"st\" ON CONFLICT DO NOTHING");
  EXPECT_TRUE(contains(insert_sql(t, "st", 4, 8), "FROM \"st\" WHERE ord >= 4 AND ord < 8 ON"));
  const ShardCursor cursors[] = {{0, 16}, {1, 4096}};
  EXPECT_EQ(upsert_cursors_sql("public", "postgres.b'x", cursors),
            "INSERT INTO \"public\".tianhe_cursors (sink, shard, log_offset) VALUES "
            "('postgres.b''x', 0, 16), ('postgres.b''x', 1, 4096) ON CONFLICT (sink, shard) DO "
            "UPDATE SET log_offset = EXCLUDED.log_offset");
  EXPECT_TRUE(contains(create_cursor_table_sql("public"),
                       "tianhe_cursors (sink text NOT NULL, shard integer NOT NULL, log_offset "
                       "bigint NOT NULL, PRIMARY KEY (sink, shard))"));
}

TEST(PostgresLayout, MetricNamesThatClashWithTheRecordFailTheStart) {
  pipeline::RegistryConfig rc;
  pipeline::ModelSpec m;
  m.name = "clock";
  pipeline::MetricSpec time;
  time.name = "time";
  m.metrics.push_back(time);
  pipeline::ModelSpec models[] = {m};
  auto reg = pipeline::Registry::build(rc, models, {});
  ASSERT_TRUE(reg.ok()) << reg.error().message;
  PostgresConfig c;
  EXPECT_TRUE(contains(check_layout(c, **reg, "sinks.postgres"), "metric \"time\""));
  c.table = std::string(60, 't') + "_{model}";
  EXPECT_TRUE(contains(check_layout(c, **reg, "sinks.postgres"), "sinks.postgres.table"));
}

TEST(PostgresErrors, SqlstateDecidesWhatHappensToTheBatch) {
  EXPECT_EQ(classify_sqlstate(""), ErrorClass::kConnection);
  EXPECT_EQ(classify_sqlstate("08006"), ErrorClass::kConnection);
  EXPECT_EQ(classify_sqlstate("57P01"), ErrorClass::kConnection);  // admin shutdown
  EXPECT_EQ(classify_sqlstate("40001"), ErrorClass::kConflict);
  EXPECT_EQ(classify_sqlstate("40P01"), ErrorClass::kConflict);
  EXPECT_EQ(classify_sqlstate("22003"), ErrorClass::kRefused);  // numeric value out of range
  EXPECT_EQ(classify_sqlstate("22021"), ErrorClass::kRefused);  // invalid byte sequence
  EXPECT_EQ(classify_sqlstate("23502"), ErrorClass::kRefused);  // not null
  EXPECT_EQ(classify_sqlstate("53100"), ErrorClass::kFull);
  EXPECT_EQ(classify_sqlstate("53200"), ErrorClass::kFull);
  EXPECT_EQ(classify_sqlstate("42P01"), ErrorClass::kOther);  // a dropped table: reopen
  EXPECT_EQ(classify_sqlstate("23505"), ErrorClass::kOther);
  EXPECT_EQ(error_class_name(ErrorClass::kRefused), "refused");
}

TEST(PostgresErrors, ARefusedBatchIsIsolatedAfterMaxAttemptsOfTheSameBatch) {
  AttemptCounter a;
  const ReportPosition p{0, 0, 64};
  EXPECT_EQ(a.fail(p, 10), 1u);
  EXPECT_EQ(a.fail(p, 10), 2u);
  EXPECT_EQ(a.fail(p, 11), 1u);  // another batch (it grew): counts again
  EXPECT_EQ(a.fail({1, 0, 64}, 11), 1u);
  EXPECT_EQ(a.fail({1, 0, 64}, 11), 2u);
  a.reset();
  EXPECT_EQ(a.fail({1, 0, 64}, 11), 1u);
}

TEST(PostgresCopy, TimestampsCountFrom2000InMicroseconds) {
  EXPECT_EQ(pg_timestamp_us(946'684'800'000'000'000), 0);
  EXPECT_EQ(pg_timestamp_us(946'684'800'000'001'999), 1);
  EXPECT_EQ(pg_timestamp_us(0), -946'684'800'000'000);
  EXPECT_EQ(pg_timestamp_us(-1), -946'684'800'000'001);  // rounded down, not toward zero
}

// Reads the binary COPY stream back (the manual's layout) for the checks below.
struct CopyReader {
  const std::string& d;
  size_t pos = 0;
  uint64_t be(size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v = v << 8 | static_cast<uint8_t>(d[pos++]);
    return v;
  }
  int32_t len() { return static_cast<int32_t>(be(4)); }
  std::string field() {
    const int32_t n = len();
    if (n < 0) return "<null>";
    std::string s = d.substr(pos, static_cast<size_t>(n));
    pos += static_cast<size_t>(n);
    return s;
  }
  int64_t int8() {
    EXPECT_EQ(len(), 8);
    return static_cast<int64_t>(be(8));
  }
};

TEST(PostgresCopy, HeaderFieldsAndTrailerFollowTheBinaryFormat) {
  CopyEncoder e;
  e.begin();
  EXPECT_EQ(e.size(), CopyEncoder::kHeaderBytes);
  EXPECT_EQ(e.data().substr(0, 11), std::string("PGCOPY\n\377\r\n\0", 11));
  const size_t row0 = e.size();
  e.row(3);
  e.int4(-2);
  e.text("ab");
  e.null();
  const size_t row1 = e.size();
  e.row(2);
  e.float8(1.5);
  e.boolean(true);
  const size_t end = e.size();
  e.end();
  EXPECT_EQ(e.rows(), 2u);
  const std::string& d = e.data();
  EXPECT_EQ(d.substr(row0, 2), std::string("\0\3", 2));
  EXPECT_EQ(d.substr(row0 + 2, 8), std::string("\0\0\0\4\xff\xff\xff\xfe", 8));
  EXPECT_EQ(d.substr(row0 + 10, 6), std::string("\0\0\0\2ab", 6));
  EXPECT_EQ(d.substr(row0 + 16, 4), "\xff\xff\xff\xff");
  EXPECT_EQ(d.substr(row1 + 6, 8), std::string("\x3f\xf8\0\0\0\0\0\0", 8));  // 1.5
  EXPECT_EQ(d.substr(d.size() - 2), "\xff\xff");
  // A slice is a complete stream of the chosen rows.
  const size_t starts[] = {row0, row1, end};
  std::string s;
  e.slice(starts, 1, 2, s);
  EXPECT_EQ(s.size(), CopyEncoder::kHeaderBytes + (end - row1) + 2);
  EXPECT_EQ(s.substr(CopyEncoder::kHeaderBytes, 2), std::string("\0\2", 2));
  e.begin();  // reused: starts again
  EXPECT_EQ(e.size(), CopyEncoder::kHeaderBytes);
  EXPECT_EQ(e.rows(), 0u);
}

TEST(PostgresCopy, ARowHasTheRecordTheTypedMetricsAndExtra) {
  const pipeline::Model model = env_model(true);
  const TableLayout t = table_layout(model, "public", "env_sensor");
  RecordFields f;
  f.tenant = "acme";
  f.device_id = 7;
  f.seq = 4'000'000'000u;  // a u32 beyond int32
  f.time_ns = 946'684'800'000'002'000;
  f.received_ns = 946'684'800'000'003'000;
  f.protocol = "report";
  core::Metric m[4];
  m[0].name = "battery_mv";
  m[0].value.type = core::ValueType::kInt64;
  m[0].value.i64 = 3600;
  m[1].name = "temperature";
  m[1].value.type = core::ValueType::kInt64;  // an int for a double column: converted
  m[1].value.i64 = 21;
  m[2].name = "rssi";  // not in the model: extra
  m[2].value.type = core::ValueType::kInt64;
  m[2].value.i64 = -70;
  m[3].name = "door_open";
  m[3].value.type = core::ValueType::kString;  // no longer its column's type: extra
  m[3].value.str = "yes";
  CopyEncoder e;
  e.begin();
  RowEncoder rows;
  uint64_t unmapped = 0;
  rows.encode(e, 5, f, m, model, t, unmapped);
  e.end();
  EXPECT_EQ(unmapped, 0u);
  CopyReader r{e.data(), CopyEncoder::kHeaderBytes};
  EXPECT_EQ(r.be(2), 1u + 8 + 4 + 1);
  EXPECT_EQ(r.len(), 4);
  EXPECT_EQ(r.be(4), 5u);  // ord
  EXPECT_EQ(r.field(), "acme");
  EXPECT_EQ(r.int8(), 7);
  EXPECT_EQ(r.int8(), 4'000'000'000);
  EXPECT_EQ(r.int8(), 946'684'800'000'002'000);
  EXPECT_EQ(r.int8(), 2);  // time: µs since 2000
  EXPECT_EQ(r.int8(), 946'684'800'000'003'000);
  EXPECT_EQ(r.field(), "report");
  EXPECT_EQ(r.field(), "<null>");  // traceparent
  // Without ord (a row COPYed straight into the table): one field fewer, the record first.
  {
    CopyEncoder direct;
    direct.begin();
    rows.encode(direct, -1, f, m, model, t, unmapped);
    CopyReader d{direct.data(), CopyEncoder::kHeaderBytes};
    EXPECT_EQ(d.be(2), 8u + 4 + 1);
    EXPECT_EQ(d.field(), "acme");
    EXPECT_EQ(direct.size(), e.size() - 2 - 8);  // no end marker yet, no ord (length + int4)
  }
  double temp = 0;
  const int64_t bits = r.int8();
  std::memcpy(&temp, &bits, 8);
  EXPECT_EQ(temp, 21.0);
  EXPECT_EQ(r.int8(), 3600);
  EXPECT_EQ(r.field(), "<null>");  // door_open
  EXPECT_EQ(r.field(), "<null>");  // firmware
  EXPECT_EQ(r.field(), "\1{\"rssi\":-70,\"door_open\":\"yes\"}");
  // Without an extra column the stray metrics are counted, not sent.
  const pipeline::Model strict = env_model(false);
  const TableLayout ts = table_layout(strict, "public", "env_sensor");
  e.begin();
  rows.encode(e, 0, f, m, strict, ts, unmapped);
  EXPECT_EQ(unmapped, 2u);
}

// Against a real server when TIANHE_TEST_PG_URL names one (postgres_server.py starts one; the
// password in TIANHE_TEST_PG_PASSWORD): the ceiling's COPY, and that it drops its scratch table.
TEST(PostgresServer, CeilingCopiesBatchesAndDropsItsScratchTable) {
  const char* url = std::getenv("TIANHE_TEST_PG_URL");
  if (url == nullptr) GTEST_SKIP() << "TIANHE_TEST_PG_URL is not set";
  pipeline::ModelSpec m;
  m.name = "env_sensor";
  pipeline::MetricSpec t;
  t.name = "temperature";
  m.metrics.push_back(t);
  pipeline::MetricSpec b;
  b.name = "battery_mv";
  b.type = core::ValueType::kInt64;
  m.metrics.push_back(b);
  pipeline::ModelSpec models[] = {m};
  pipeline::DeviceRange devices[] = {{.first_id = 1, .count = 10, .model = "env_sensor"}};
  auto reg = pipeline::Registry::build({}, models, devices);
  ASSERT_TRUE(reg.ok()) << reg.error().message;
  PostgresConfig c;
  c.sink.url = url;
  c.sink.password_env = "TIANHE_TEST_PG_PASSWORD";
  c.sink.batch_reports = 1000;
  auto spec = connect_spec(c, "sinks.postgres");
  ASSERT_TRUE(spec.ok()) << spec.error().message;
  auto rate = ceiling(c, *spec, **reg, 5000);
  ASSERT_TRUE(rate.ok()) << rate.error().message;
  EXPECT_GT(*rate, 0);
  PgConnection conn;
  ASSERT_TRUE(conn.connect(*spec, std::chrono::seconds(5)).ok());
  PgResult r;
  PgError err;
  ASSERT_TRUE(conn.query("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'tianhe_ceiling_%'",
                         {}, r, err))
      << err.message;
  EXPECT_EQ(r.value(0, 0), "0");
}

}  // namespace
}  // namespace tianhe::sinks::postgres
