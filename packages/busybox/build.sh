# BusyBox from Debian's source package as a hardened static PIE (packages/busybox/
# recipe.toml says why). Run by mixbuild with `sh -eu` in a scratch copy of the
# patched source, with DESTDIR, RECIPE_DIR and JOBS set ([[debian_source]] in
# docs/recipes.md).

# Debian's own hardening flags for BusyBox (DEB_BUILD_MAINT_OPTIONS=hardening=+all:
# stack protector, format checks, FORTIFY_SOURCE=2, full RELRO with BIND_NOW), with
# -O2 kept (Debian filters it out for BusyBox's -Os) and -fPIE spelled out.
# -frecord-gcc-switches stores the compile options in .GCC.command.line: in a
# static binary that record is the evidence of the stack protector that the ELF
# hardening check reads, since libc.a brings its own __stack_chk_fail anyway.
# No -fcf-protection: Debian 12's crt files and libc.a carry no IBT/SHSTK marks,
# so the linked binary would not be marked either, and Linux 6.1 enforces
# neither for user space.
CFLAGS="-O2 -fPIE -fstack-protector-strong -Wformat -Werror=format-security"
CFLAGS="$CFLAGS -D_FORTIFY_SOURCE=2 -frecord-gcc-switches"
LDFLAGS="-Wl,-z,relro -Wl,-z,now"
# Only the final link is static-pie (CFLAGS_busybox): BusyBox's partial links
# (ld -r) take LDFLAGS too, and -r refuses -pie.
LINK="-static-pie"

export KCONFIG_NOTIMESTAMP=1
cp "$RECIPE_DIR/busybox.config" .config
yes "" | make silentoldconfig >/dev/null
# The committed configuration must be complete and current: an option that
# kconfig adds or changes would otherwise slip into the build unreviewed.
if ! diff -u "$RECIPE_DIR/busybox.config" .config; then
    echo "packages/busybox/busybox.config differs from what kconfig makes of it (above);" \
         "update it" >&2
    exit 1
fi

make -j"$JOBS" busybox SKIP_STRIP=y BB_EXTRA_VERSION="MixOS" \
    CONFIG_EXTRA_CFLAGS="$CFLAGS" CONFIG_EXTRA_LDFLAGS="$LDFLAGS" CFLAGS_busybox="$LINK"
make busybox.links

# The applets must be exactly the links the package makes (applets.txt, merged /usr).
sed -e 's|^/bin/|/usr/bin/|' -e 's|^/sbin/|/usr/sbin/|' busybox.links | sort >links.built
sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$RECIPE_DIR/applets.txt" | sort >links.wanted
if ! diff -u links.wanted links.built; then
    echo "the applets of busybox.config (+) differ from applets.txt (-)" >&2
    exit 1
fi

# Stripped, except the FORTIFY_SOURCE functions (__*_chk), which the ELF
# hardening check counts by symbol.
strip --strip-all --wildcard --keep-symbol='__*_chk' -o busybox busybox_unstripped
install -D -m 0755 busybox "$DESTDIR/usr/bin/busybox"
