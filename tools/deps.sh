#!/usr/bin/env bash
# Installs every Debian package hypercore needs to build, run and test.
# Idempotent: when everything is present it returns in well under a second
# without touching apt. Must run as root on Debian 12 (bookworm).
set -euo pipefail

packages=(
	# toolchain
	build-essential pkg-config clang llvm lld libclang-rt-14-dev
	# BPF
	libbpf-dev libxdp-dev bpftool libelf-dev zlib1g-dev
	# protobuf and gRPC (C core)
	protobuf-compiler protobuf-c-compiler libprotobuf-c-dev libprotobuf-dev libgrpc-dev
	# libraries
	libnl-3-dev libnl-route-3-dev libssl-dev libmsgpack-dev libjansson-dev
	libmicrohttpd-dev libnghttp2-dev
	# tests
	libcmocka-dev python3 python3-grpcio python3-grpc-tools python3-protobuf
	curl iproute2 procps serf tmux ethtool nftables
	# packaging tests: the .deb checked, its man pages rendered, its unit verified
	lintian man-db groff-base systemd
	# proxy tests and benchmarks: backends, the HAProxy baseline, load generators
	nginx-light haproxy wrk openssl nghttp2-client
	# workload runtime: embedded containerd, CNI, local registry and test images
	containerd runc containernetworking-plugins iptables docker-registry skopeo
	busybox-static runsc
	# microVM workloads: the VMM (QEMU's microvm machine), the guest kernel
	# (its modules go into each VM's initramfs), mke2fs for root images
	qemu-system-x86 linux-image-cloud-amd64 e2fsprogs
	# examples/monitoring: promtool checks the alert rules
	prometheus
)

missing=()
for p in "${packages[@]}"; do
	# dpkg-query is ~1 ms per package; the status must be "install ok installed".
	if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]]; then
		missing+=("$p")
	fi
done

if ((${#missing[@]} == 0)); then
	exit 0
fi

if ((EUID != 0)); then
	echo "deps.sh: missing packages (${missing[*]}); run as root to install them" >&2
	exit 1
fi

echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
