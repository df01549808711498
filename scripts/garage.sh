# Sourced: starts a 3-node Garage 2.5.0 cluster on 127.0.0.1 (replication
# factor 3, SQLite metadata) under $work, with a key and a bucket named
# dedup, and exports what S3 clients need (AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_REGION=garage, AWS_ENDPOINT: node 1's S3 API).
# Needs: $work (wiped), $garage (the binary; installed here when missing,
# about 9 minutes). Defines start_node N and g (garage on node 1); stops
# every node on exit.

if [ ! -x "$garage" ]; then
    echo "installing garage 2.5.0 into $(dirname "$(dirname "$garage")") (about 9 minutes)"
    cargo install garage@2.5.0 --locked --root "$(dirname "$(dirname "$garage")")"
fi

rm -rf "$work"
mkdir -p "$work"
pids=()
stop_all() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop_all EXIT

secret=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
node_conf() { echo "$work/node$1/garage.toml"; }
for n in 1 2 3; do
    dir=$work/node$n
    mkdir -p "$dir/meta" "$dir/data"
    cat > "$(node_conf $n)" <<CONF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:39${n}1"
rpc_public_addr = "127.0.0.1:39${n}1"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:39${n}0"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:39${n}3"
CONF
done

start_node() {
    "$garage" -c "$(node_conf "$1")" server > "$work/node$1/log" 2>&1 &
    pids[$1]=$!
}
g() { "$garage" -c "$(node_conf 1)" "$@"; }
for n in 1 2 3; do start_node $n; done
for _ in $(seq 100); do g status > /dev/null 2>&1 && break; sleep 0.2; done

ids=()
for n in 1 2 3; do
    ids[$n]=$("$garage" -c "$(node_conf $n)" node id -q 2>/dev/null)
done
g node connect "${ids[2]}" > /dev/null
g node connect "${ids[3]}" > /dev/null
for n in 1 2 3; do
    g layout assign -z dc1 -c 1G "${ids[$n]%%@*}" > /dev/null
done
g layout apply --version 1 > /dev/null
key=$(g key create dedup)
AWS_ACCESS_KEY_ID=$(echo "$key" | awk '/Key ID:/ {print $3}')
AWS_SECRET_ACCESS_KEY=$(echo "$key" | awk '/Secret key:/ {print $3}')
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
export AWS_REGION=garage AWS_ENDPOINT=http://127.0.0.1:3910
g bucket create dedup > /dev/null
g bucket allow --read --write --owner dedup --key dedup > /dev/null
echo "garage: 3 nodes on 127.0.0.1, replication factor 3; clients talk to node 1"
