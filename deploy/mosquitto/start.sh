#!/bin/sh
# Start Mosquitto for the liveprof stack with credentials required
# (docker-compose.yml runs this as the container's command; mosquitto.conf
# sets allow_anonymous false and reads the password file written here).
#
# The password file is made afresh at every start from MQTT_USER and
# MQTT_PASSWORD (.env), so changing them in .env and restarting is enough.
# MOSQUITTO_CONF, PASSWORD_FILE and MOSQUITTO move the config, the file and the
# binary (the tests run this script on a local mosquitto).
set -eu
: "${MQTT_USER:?MQTT_USER is not set (.env)}"
: "${MQTT_PASSWORD:?MQTT_PASSWORD is not set (.env; deploy/make-env writes one)}"
conf="${MOSQUITTO_CONF:-/mosquitto/config/mosquitto.conf}"
passwd="${PASSWORD_FILE:-/mosquitto/data/passwd}"

case "$MQTT_USER" in *:*) echo "MQTT_USER must not contain ':'" >&2; exit 2;; esac

# written in clear, then hashed in place (-U): the password never shows in argv
umask 077
rm -f "$passwd"
printf '%s:%s\n' "$MQTT_USER" "$MQTT_PASSWORD" >"$passwd"
mosquitto_passwd -U "$passwd"
# mosquitto reads it as its own user once it has dropped root
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
  chown mosquitto:mosquitto "$passwd"
fi
exec "${MOSQUITTO:-mosquitto}" -c "$conf"
