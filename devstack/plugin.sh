#!/bin/bash
# freezer devstack plugin: installs this agent (in place of upstream freezer), configures and
# runs freezer-scheduler against freezer-api. devstack sources it as: plugin.sh <mode> [<phase>].

if is_service_enabled freezer; then
    if [[ "$1" == "source" || "$(type -t install_freezer)" != "function" ]]; then
        source $FREEZER_DIR/devstack/lib/freezer
    fi

    if [[ "$1" == "stack" && "$2" == "pre-install" ]]; then
        check_freezer_plugin_order
    elif [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo_summary "Installing freezer"
        install_freezer
        patch_freezer_api_for_sftp
    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        echo_summary "Configuring freezer-scheduler"
        configure_freezer_scheduler
    elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
        echo_summary "Starting freezer-scheduler"
        start_freezer_scheduler
    elif [[ "$1" == "stack" && "$2" == "test-config" ]]; then
        if is_service_enabled freezer-smoke-ftp; then
            echo_summary "freezer smoke backup to a loopback FTP server"
            start_freezer_smoke_ftp
            run_freezer_smoke_backup
        fi
    fi

    if [[ "$1" == "unstack" ]]; then
        stop_freezer_scheduler
        stop_freezer_smoke_ftp
    fi

    if [[ "$1" == "clean" ]]; then
        cleanup_freezer
    fi
fi
