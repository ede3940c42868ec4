<?php
// Roundcube's message cache (messages_cache, kept in the config's database) as the webmail
// keeps it: the folder synchronised first (rcube_imap_cache with QRESYNC: the uids vanished
// and the flags changed since the cached HIGHESTMODSEQ), then the list of the folder from the
// cache. Prints the list (uid and flags, newest first) as JSON; the IMAP trace goes to the
// config's log_dir (imap.log).
//
// php roundcube-cache.php HOST PORT USER PASSWORD FOLDER   (ROUNDCUBE_CONFIG_DIR names the config)

define('INSTALL_PATH', '/var/lib/roundcube/');
require_once INSTALL_PATH . 'program/include/clisetup.php';

[, $host, $port, $user, $pass, $folder] = $argv;
$_SERVER['REQUEST_URI'] = 'cli';

$rcmail = rcmail::get_instance();
// The cache is per Roundcube user: the row a first login makes.
$rcmail->set_user(rcube_user::query($user, $host) ?: rcube_user::create($user, $host));
$rcmail->storage_init();
$imap = $rcmail->get_storage();
if (!$imap->connect($host, $user, $pass, (int) $port, 'ssl')) {
    fwrite(STDERR, "login failed: " . $imap->get_error_str() . "\n");
    exit(2);
}
$imap->set_folder($folder);
$imap->folder_sync($folder);
$imap->set_pagesize(100);
$list = $imap->list_messages($folder, 1, 'arrival', 'DESC');
$imap->close();
echo json_encode(array_map(fn($h) => ['uid' => (int) $h->uid, 'flags' => array_keys(array_filter($h->flags))], $list)), "\n";
