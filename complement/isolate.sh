#!/usr/bin/env bash
# `go test -exec` wrapper: runs one test binary in a network and mount
# namespace of its own, where "hs1".."hs3" and Complement's host name resolve
# to loopback addresses (see deployer.planAddresses, "named" mode), and DNS
# queries go to the test binary's own always-NXDOMAIN server on 127.0.0.1:53
# (deployer.startNXDomainServer).
#
# Why: the pinned Complement's upstream tests name homeservers "hs1", "hs2" in
# room "via" lists, as on its Docker network. A private /etc/hosts gives those
# names to loopback addresses; a private network namespace makes the fixed
# ports free, keeps concurrently running test binaries (and anything else on
# the machine) apart, and leaves nothing listening on the host. Needs root,
# unshare(1) and ip(8).
set -euo pipefail

if [[ "${1:-}" != "--inside" ]]; then
    exec unshare --net --mount --propagation private -- "$0" --inside "$@"
fi
shift

ip link set lo up
hosts=$(mktemp)
cat >"$hosts" <<'EOF'
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
127.0.0.1 host.docker.internal
127.0.0.11 hs1
127.0.0.12 hs2
127.0.0.13 hs3
EOF
resolv=$(mktemp)
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$resolv"
chmod 644 "$hosts" "$resolv"
# Visible only inside this mount namespace; the machine's files are untouched.
mount --bind "$hosts" /etc/hosts
mount --bind "$resolv" /etc/resolv.conf
rm -f "$hosts" "$resolv"
exec "$@"
