#!/usr/bin/env bash
# Starts a private Dovecot IMAP server: its own config, base_dir, state and mail folder under
# DIR, one plaintext IMAP listener on 127.0.0.1:PORT, never the system one.
#
#   scripts/dovecot-private.sh DIR PORT USER PASS
#
# Runs in the foreground (exec), so the caller owns the process; logs go to stderr. One user,
# USER with password PASS, logs in with LOGIN or AUTHENTICATE PLAIN without TLS; their mail is
# a Maildir under DIR/mail/USER. No imaps, POP3, LMTP or submission listener, no SSL. Installs
# Debian's dovecot-imapd first when it is missing (its system service is stopped again).
#
# Works as root (CI) and as a normal user. As a normal user every Dovecot process runs as that
# user. As root, Dovecot refuses root for login and mail processes, so they run as Debian's
# dovenull and dovecot users, and DIR is made world-readable (0755) for them.
set -euo pipefail

usage="usage: dovecot-private.sh DIR PORT USER PASS"
dir=${1:?$usage}
port=${2:?$usage}
user=${3:?$usage}
pass=${4:?$usage}

case "$user$pass" in
  *[:[:space:]]*) echo "dovecot-private.sh: USER and PASS must not hold ':' or spaces" >&2; exit 2 ;;
esac

if [ ! -x /usr/lib/dovecot/imap ]; then
  echo "dovecot not found; installing Debian's dovecot-imapd" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null
  service dovecot stop >/dev/null 2>&1 || true
fi
dovecot=$(command -v dovecot || echo /usr/sbin/dovecot)

mkdir -p "$dir"/{run,state,mail,home}
dir=$(cd "$dir" && pwd)

me=$(id -un)
group=$(id -gn)
if [ "$(id -u)" -eq 0 ]; then
  # Dovecot runs neither login nor mail processes as root: the login processes run as Debian's
  # dovenull and the mailbox belongs to Debian's dovecot user (both come with the package);
  # the master, config and auth processes stay root.
  login_user=dovenull
  mail_user=dovecot
  getent passwd "$login_user" >/dev/null || login_user=nobody
  getent passwd "$mail_user" >/dev/null || mail_user=nobody
  mail_uid=$(id -u "$mail_user")
  mail_gid=$(id -g "$mail_user")
  # Those users reach the sockets in base_dir and the mail folders below DIR.
  chmod 0755 "$dir" "$dir/run"
  chown "$mail_uid:$mail_gid" "$dir/mail" "$dir/home"
else
  # Rootless: every process runs as the invoking user.
  login_user=$me
  mail_uid=$(id -u)
  mail_gid=$(id -g)
fi

# The uid, gid and home fields stay empty: mail_uid, mail_gid and mail_home give them.
printf '%s:{PLAIN}%s:::::\n' "$user" "$pass" >"$dir/users"
chmod 0600 "$dir/users"

cat >"$dir/dovecot.conf" <<CONF
# Written by scripts/dovecot-private.sh; private to this folder.
base_dir = $dir/run
state_dir = $dir/state
instance_name = baton-private-$port
log_path = /dev/stderr
info_log_path = /dev/stderr
debug_log_path = /dev/stderr
log_timestamp = "%Y-%m-%d %H:%M:%S "

protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
shutdown_clients = yes

default_internal_user = $me
default_internal_group = $group
default_login_user = $login_user
first_valid_uid = $mail_uid
last_valid_uid = $mail_uid
first_valid_gid = $mail_gid
last_valid_gid = $mail_gid
mail_uid = $mail_uid
mail_gid = $mail_gid
mail_home = $dir/home/%u
mail_location = maildir:$dir/mail/%u
mail_max_userip_connections = 100

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $dir/users
}

namespace inbox {
  inbox = yes
  separator = /
}

service imap-login {
  chroot =
  user = $login_user
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
service imap {
  process_limit = 64
}
CONF

exec "$dovecot" -F -c "$dir/dovecot.conf"
