#!/usr/bin/env bash
# Installs what the tests and checks use from Debian's packages, when missing: skopeo (a
# real registry client, speaking through containers/image, the library podman and buildah
# use too), shellcheck (make shellcheck) and slapd (OpenLDAP: the real directory the LDAP
# tests start privately on 127.0.0.1; its system service is left unconfigured and stopped).
set -euo pipefail
missing=()
command -v skopeo >/dev/null || missing+=(skopeo)
command -v shellcheck >/dev/null || missing+=(shellcheck)
[[ -x /usr/sbin/slapd && -d /etc/ldap/schema ]] || missing+=(slapd)
[[ ${#missing[@]} -eq 0 ]] && exit 0
echo "test-deps: apt-get install ${missing[*]}" >&2
if [[ $(id -u) -ne 0 ]]; then echo "test-deps: run as root or install: ${missing[*]}" >&2; exit 1; fi
# slapd: no system database, no service start (the tests run their own instance).
echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
