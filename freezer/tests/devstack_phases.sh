#!/bin/bash
# Runs this repository's devstack plugin against devstack's own function library, the way
# stack.sh, unstack.sh and clean.sh call it: devstack_phases.sh stack|unstack|clean.
#
# The caller sets DEVSTACK_DIR, TOP_DIR, DEST, DATA_DIR, STACK_USER, ENABLED_SERVICES and
# whatever stack.sh would have set (KEYSTONE_SERVICE_URI, SERVICE_PASSWORD, ...) and
# FREEZER_REPO_UNDER_TEST, the checkout to enable as plugin "freezer" (after the plugins named in
# PLUGINS_BEFORE and before those in PLUGINS_AFTER: empty stand-ins). Only what needs the
# network, systemd or root is replaced; everything else is devstack's code.

set -o errexit
set -o xtrace

source $DEVSTACK_DIR/functions

# -- stubs ----------------------------------------------------------------------------------
# The checkout under test stands for the clone.
function git_clone {
    local remote=$1 dest=$2
    [[ -e $dest ]] || ln -s "$remote" "$dest"
}

# The test venv ($DEVSTACK_VENV) already holds this repository installed with pip install -e.
function setup_develop {
    echo "setup_develop $*: installed in $DEVSTACK_VENV already"
}

function install_package {
    echo "install_package $*: skipped"
}

# The phases run as STACK_USER inside temporary directories.
function sudo {
    "$@"
}

# run_process without systemd: devstack's own checks on the command, then the command in its
# own session, its pid in $SERVICE_DIR/<service>.pid and its output in $SERVICE_DIR/<service>.log.
function run_process {
    local service=$1 command=$2
    is_service_enabled $service || return 0
    _common_systemd_pitfalls "$command"
    mkdir -p $SERVICE_DIR
    setsid $command < /dev/null > $SERVICE_DIR/$service.log 2>&1 &
    echo $! > $SERVICE_DIR/$service.pid
}

# stop_process without systemd: SIGTERM, then wait for the process to go (as systemctl stop does).
function stop_process {
    local service=$1 pid tries=0
    is_service_enabled $service || return 0
    [[ -f $SERVICE_DIR/$service.pid ]] || return 0
    pid=$(cat $SERVICE_DIR/$service.pid)
    kill -TERM $pid 2> /dev/null || true
    while kill -0 $pid 2> /dev/null; do
        tries=$((tries + 1))
        if [[ $tries -ge 600 ]]; then
            kill -KILL $pid
        fi
        sleep 0.1
    done
    rm -f $SERVICE_DIR/$service.pid
}

# -- what stack.sh, unstack.sh and clean.sh do around the plugin ----------------------------
SERVICE_DIR=${SERVICE_DIR:-$DEST/status}
for plugin in ${PLUGINS_BEFORE:-}; do
    enable_plugin $plugin /nonexistent/$plugin
done
enable_plugin freezer $FREEZER_REPO_UNDER_TEST devstack
for plugin in ${PLUGINS_AFTER:-}; do
    enable_plugin $plugin /nonexistent/$plugin
done
case $1 in
    stack)
        fetch_plugins
        run_phase source
        for phase in pre-install install post-config extra test-config; do
            run_phase stack $phase
        done
        ;;
    unstack)
        run_phase source
        run_phase unstack
        ;;
    clean)
        run_phase source
        run_phase clean
        ;;
    *)
        die $LINENO "usage: $0 stack|unstack|clean"
        ;;
esac
