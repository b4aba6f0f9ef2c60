/* Shows the FTP/SFTP server fields of freezer's action form only for the ftp, ftps and sftp
 * storages (the CA only for ftps, the host key ones only for sftp); choosing a storage moves the
 * port between 21 and 22 unless another port was typed. */

/*global $, horizon*/

"use strict";

var freezerFtpStorage = (function () {
    var FTP_STORAGES = ["ftp", "ftps", "sftp"];
    var FIELDS = ["#id_ftp_host", "#id_ftp_port", "#id_ftp_username", "#id_ftp_password",
                  "#id_ftp_password_file"];
    // Fields for one storage only: the CA for FTPS, the host key settings for SFTP.
    var ONLY_FOR = {"#id_ftp_cacert": "ftps", "#id_ftp_known_hosts": "sftp", "#id_ftp_host_key_policy": "sftp"};

    function usesFtp() {
        var action = $("#id_action").val();
        var storage = $("#id_storage").val();
        return (action === "backup" || action === "restore") && FTP_STORAGES.indexOf(storage) >= 0;
    }

    function setDefaultPort() {
        var $port = $("#id_ftp_port");
        var wanted = $("#id_storage").val() === "sftp" ? "22" : "21";
        if ($port.val() === "" || $port.val() === "21" || $port.val() === "22") {
            $port.val(wanted);
        }
    }

    function update(event) {
        if (!$("#id_ftp_host").length) {
            return;
        }
        var show = usesFtp();
        FIELDS.forEach(function (field) {
            $(field).closest(".form-group").toggle(show);
        });
        Object.keys(ONLY_FOR).forEach(function (field) {
            $(field).closest(".form-group").toggle(show && $("#id_storage").val() === ONLY_FOR[field]);
        });
        if (show && event && event.target && event.target.id === "id_storage") {
            setDefaultPort();
        }
    }

    // Bound on the document: runs after freezer-web-ui's own handlers, which hide and show the rest.
    $(document).on("change", "#id_action, #id_storage, #id_mode", update);
    $(document).on("shown.bs.modal", ".modal", function () { update(); });
    return {update: update};
}());

if (typeof horizon !== "undefined") {
    horizon.addInitFunction(function () { freezerFtpStorage.update(); });
} else {
    $(function () { freezerFtpStorage.update(); });
}
