#!/usr/bin/env bash
# Starts a private clickhouse-server: its own config, data folder and ports, never the system one.
#
#   scripts/clickhouse-private.sh DIR HTTP_PORT [TCP_PORT]
#
# Runs in the foreground (exec), so the caller owns the process. Installs Debian's
# clickhouse-server first when it is missing. The server listens on 127.0.0.1 only.
set -euo pipefail

dir=${1:?usage: clickhouse-private.sh DIR HTTP_PORT [TCP_PORT]}
http_port=${2:?usage: clickhouse-private.sh DIR HTTP_PORT [TCP_PORT]}
tcp_port=${3:-$((http_port + 1))}

if ! command -v clickhouse-server >/dev/null 2>&1 && [ ! -x /usr/sbin/clickhouse-server ]; then
  echo "clickhouse-server not found; installing Debian's package" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server >/dev/null
fi
server=$(command -v clickhouse-server || echo /usr/sbin/clickhouse-server)

mkdir -p "$dir"/{data,tmp,user_files,log,format_schemas}
dir=$(cd "$dir" && pwd)

cat >"$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$dir/log/clickhouse-server.log</log>
        <errorlog>$dir/log/clickhouse-server.err.log</errorlog>
        <size>10M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$http_port</http_port>
    <tcp_port>$tcp_port</tcp_port>
    <max_connections>256</max_connections>
    <keep_alive_timeout>10</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>1073741824</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
XML

cat >"$dir/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML

cd "$dir"
exec "$server" --config-file="$dir/config.xml"
