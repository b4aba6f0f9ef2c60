"""Horizon ``customization_module``: applies the FTP/FTPS/SFTP additions to freezer-web-ui."""

from freezer_ui.actions import views
from freezer_ui.actions.workflows import action

from freezer_ui_ftp.form import extend_action_form

if extend_action_form(action.ActionConfigurationAction, action.ActionConfiguration):
    views.ActionView.template_name = "freezer_ui_ftp/action_detail.html"
