# cloud-init.sh: sourced by the az, aws and gcloud example providers. It
# reads a create request and writes, per machine, the cloud-init user data
# that installs `lote` and starts `lote agent` as a systemd service.
#
# Environment:
#   LOTE_DOWNLOAD_URL  where a VM downloads the lote binary for its architecture (required)
# shellcheck shell=bash

die() {
	echo "lote-provider-${PROVIDER_NAME:-cloud}: $*" >&2
	exit 1
}

# read_create_request parses the create request on stdin into REQ, POOL,
# SERVER, JOIN_TOKEN, CA_PEM and SLOTS, and checks what goes into user data.
read_create_request() {
	REQ=$(cat)
	POOL=$(jq -r '.pool // ""' <<<"$REQ")
	SERVER=$(jq -r '.server // ""' <<<"$REQ")
	JOIN_TOKEN=$(jq -r '.join_token // ""' <<<"$REQ")
	CA_PEM=$(jq -r '.ca_pem // ""' <<<"$REQ")
	SLOTS=$(jq -r '.slots // 0' <<<"$REQ")
	valid_id "$POOL" || die "create: invalid pool $POOL"
	local url='^https?://[][A-Za-z0-9.:_-]+(/[A-Za-z0-9._/-]*)?$'
	[[ $SERVER =~ $url ]] || die "create: invalid server URL $SERVER"
	[[ $JOIN_TOKEN =~ ^[A-Za-z0-9._~+/=-]+$ ]] || die "create: invalid join token"
	[[ $SLOTS =~ ^[0-9]+$ ]] || die "create: invalid slots $SLOTS"
	[[ -n ${LOTE_DOWNLOAD_URL:-} ]] || die "LOTE_DOWNLOAD_URL is not set"
}

# valid_id: pool and node IDs go into file names, unit files and tags.
valid_id() {
	[[ ${#1} -le 128 && $1 =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]]
}

# user_data ID prints the #cloud-config of the machine for node ID.
user_data() {
	local id=$1 ca_args="" slots_args=""
	if [[ -n $CA_PEM ]]; then ca_args=" --ca-file /etc/lote/ca.pem"; fi
	if [[ $SLOTS -gt 0 ]]; then slots_args=" --slots $SLOTS"; fi
	cat <<EOF
#cloud-config
write_files:
  - path: /etc/lote/ca.pem
    permissions: '0644'
    content: |
$(printf '%s\n' "$CA_PEM" | sed 's/^/      /')
  - path: /etc/lote/agent.env
    permissions: '0600'
    content: |
      LOTE_JOIN_TOKEN=$JOIN_TOKEN
  - path: /etc/systemd/system/lote-agent.service
    permissions: '0644'
    content: |
      [Unit]
      Description=Lote agent (pool $POOL, node $id)
      Wants=network-online.target
      After=network-online.target
      [Service]
      EnvironmentFile=/etc/lote/agent.env
      ExecStart=/usr/local/bin/lote agent --server $SERVER$ca_args --pool $POOL --dir /var/lib/lote/agent --name $id$slots_args
      Restart=always
      RestartSec=5
      [Install]
      WantedBy=multi-user.target
runcmd:
  - [sh, -c, 'curl -fsSL --retry 5 -o /usr/local/bin/lote "\$0" && chmod 755 /usr/local/bin/lote', '$LOTE_DOWNLOAD_URL']
  - [systemctl, daemon-reload]
  - [systemctl, enable, --now, lote-agent.service]
EOF
}

# machine ID STATE [ADDRESS [ERROR [SPOT]]] prints one Machine as JSON.
machine() {
	jq -nc --arg id "$1" --arg state "$2" --arg addr "${3:-}" --arg err "${4:-}" --arg spot "${5:-false}" \
		'{id: $id, state: $state} + (if $addr != "" then {address: $addr} else {} end)
		 + (if $err != "" then {error: $err} else {} end) + (if $spot == "true" then {spot: true} else {} end)'
}

# vm_name ID: a VM name every cloud accepts (lowercase letters, digits and
# hyphens, at most 63 characters): lote-ID when the ID already is one, else
# lote-<hash of ID>. The exact node ID travels in a tag, label or metadata item.
vm_name() {
	if [[ ${#1} -le 50 && $1 =~ ^[a-z0-9-]+$ ]]; then
		echo "lote-$1"
	else
		echo "lote-$(printf '%s' "$1" | sha256sum | cut -c1-16)"
	fi
}
