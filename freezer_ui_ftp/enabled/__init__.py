"""Horizon "enabled" file for the plug-in (copied into ``openstack_dashboard/local/enabled``)."""
