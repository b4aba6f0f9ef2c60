"""Horizon ``customization_module``: applies the FTP/FTPS/SFTP additions to freezer-web-ui."""

from freezer_ui.actions import views
from freezer_ui.actions.workflows import action

from freezer_ui_ftp.form import extend_action_form, store_only_chosen

if extend_action_form(action.ActionConfigurationAction, action.ActionConfiguration):
    store_only_chosen(action)
    views.ActionView.template_name = "freezer_ui_ftp/action_detail.html"
