#!/bin/sh
# Runs inside the appliance's root filesystem (chroot) once its packages are installed: the
# parts of the system setup that do not depend on the Pullback release, so that they are
# cached with the packages. packaging/build-image adds the release on top.
set -eu

# The service account. Its ids are fixed because the data partition outlives the root slots:
# files written by one release must belong to the same account in the next one.
groupadd --system --gid 900 pullback
useradd --system --uid 900 --gid 900 --home-dir /var/lib/pullback --no-create-home \
    --shell /usr/sbin/nologin pullback

# systemd's own network, resolver and time daemons; nothing that updates itself behind the
# appliance's back.
systemctl enable systemd-networkd.service systemd-resolved.service systemd-timesyncd.service
systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
    fstrim.timer 2>/dev/null || true
ln -sf ../run/systemd/resolve/stub-resolv.conf /etc/resolv.conf
# Only `pullback upgrade mark-good` may confirm a trial slot, after its health check; systemd's
# own blessing (in the systemd-boot package, not installed) would confirm it at boot.
systemctl mask systemd-bless-boot.service >/dev/null 2>&1 || true

# A console that says what it is, and the C.UTF-8 locale everywhere.
echo 'LANG=C.UTF-8' > /etc/default/locale
