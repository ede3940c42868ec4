<?php
// What Roundcube's webmail does over IMAP, without its web pages: the storage layer
// (rcube_imap on rcube_imap_generic) as rcmail sets it up from the config (imap_conn_options
// and all), driven through a folder list, a message list sorted and threaded, a search, a
// message opened part by part, flags, a move and a draft. Prints one JSON object of what it
// saw; the IMAP trace goes to the config's log_dir (imap.log).
//
// php roundcube-webmail.php HOST PORT USER PASSWORD   (ROUNDCUBE_CONFIG_DIR names the config)

define('INSTALL_PATH', '/var/lib/roundcube/');
require_once INSTALL_PATH . 'program/include/clisetup.php';

[, $host, $port, $user, $pass] = $argv;
$_SERVER['REQUEST_URI'] = 'cli';

$rcmail = rcmail::get_instance();
$rcmail->storage_init();
$imap = $rcmail->get_storage();
if (!$imap->connect($host, $user, $pass, (int) $port, 'ssl')) {
    fwrite(STDERR, "login failed: " . $imap->get_error_str() . "\n");
    exit(2);
}
$conn = $imap->conn;
$out = [];

// The folder list, as the folder pane asks for it (LIST-EXTENDED, SPECIAL-USE, LIST-STATUS).
$out['capabilities'] = array_values(array_filter(['LIST-EXTENDED', 'LIST-STATUS', 'ESEARCH', 'SORT', 'THREAD=REFERENCES', 'LITERAL+', 'UIDPLUS', 'SPECIAL-USE'], fn($c) => $conn->getCapability($c)));
$out['created'] = $imap->create_folder('Lists/Threads', true);
$out['subscribed'] = $imap->list_folders_subscribed('', '*', 'mail');
$out['folders'] = $imap->list_folders();
$out['special'] = $imap->get_special_folders(true);
// (LIST-STATUS is left out: rcube_imap_generic 1.6 hands an array to ltrim() parsing its STATUS lines, a TypeError on PHP 8.)
$out['specialUse'] = $conn->listMailboxes('', '*', ['SUBSCRIBED'], ['SPECIAL-USE']);
$out['specialUseFlags'] = array_map(fn($f) => $conn->data['LIST'][$f] ?? [], $out['specialUse']);

// The message list: by date, then threaded (REFERENCES), then a search in it.
$imap->set_folder('INBOX');
$imap->set_pagesize(50);
$out['count'] = $imap->count('INBOX', 'ALL', true);
$out['unseen'] = $imap->count('INBOX', 'UNSEEN', true);
$list = $imap->list_messages('INBOX', 1, 'date', 'ASC');
$out['byDate'] = array_map(fn($h) => ['uid' => (int) $h->uid, 'subject' => $h->subject, 'messageId' => $h->messageID], $list);
$out['bySubject'] = $conn->sort('INBOX', 'SUBJECT', 'ALL', true, 'UTF-8')->get();
$out['byArrivalReverse'] = $imap->index('INBOX', 'arrival', 'DESC')->get();
$out['threadsRaw'] = $conn->thread('INBOX', 'REFERENCES', 'ALL', true, 'UTF-8')->get_tree();
$imap->set_threading('REFERENCES');
$threaded = $imap->list_messages('INBOX', 1, 'date', 'ASC');
$out['threaded'] = array_map(fn($h) => ['uid' => (int) $h->uid, 'depth' => (int) $h->depth, 'parent' => (int) $h->parent_uid, 'hasChildren' => (bool) $h->has_children], $threaded);
$imap->set_threading(false);
$found = $imap->search('INBOX', 'HEADER SUBJECT "plan"', 'UTF-8', 'date');
$out['search'] = $found->get();
$imap->set_search_set(null);
$esearch = $conn->search('INBOX', 'SUBJECT "plan"', true, ['COUNT', 'MIN', 'MAX']);
$out['esearch'] = ['count' => $esearch->count(), 'min' => $esearch->min(), 'max' => $esearch->max()];

// A message opened: its structure, its parts decoded, an attachment's name and size.
$withAttachment = null;
foreach ($list as $h) {
    if ($h->subject === 'The plan, attached') {
        $withAttachment = (int) $h->uid;
    }
}
$message = new rcube_message($withAttachment, 'INBOX');
$out['opened'] = [
    'subject' => $message->subject,
    'from' => $message->get_header('from'),
    'text' => $message->first_text_part(),
    'attachments' => array_map(fn($p) => ['name' => $p->filename, 'type' => $p->mimetype, 'size' => strlen($imap->get_message_part($withAttachment, $p->mime_id, $p))], $message->attachments),
];

// Flags, a move, and a draft saved, as the buttons do.
$first = $out['byDate'][0]['uid'];
$imap->set_flag($first, 'SEEN', 'INBOX');
$imap->set_flag($first, 'FLAGGED', 'INBOX');
$out['flagsAfter'] = $imap->get_message_headers($first, 'INBOX', true)->flags;
$last = end($out['byDate'])['uid'];
$out['moved'] = $imap->move_message($last, 'Lists/Threads', 'INBOX');
$out['countAfterMove'] = $imap->count('INBOX', 'ALL', true);
$out['inThreadsFolder'] = $imap->count('Lists/Threads', 'ALL', true);
$draft = "From: {$user}\r\nTo: someone@example.test\r\nSubject: A draft\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nNot sent yet: Grüße.\r\n";
$out['draftUid'] = $imap->save_message('Drafts', $draft, '', false, ['SEEN', 'DRAFT']);
$imap->set_folder('Drafts');
$out['draftBack'] = $imap->get_raw_body($out['draftUid']);
$out['draftFlags'] = $imap->get_message_headers($out['draftUid'], 'Drafts', true)->flags;
$out['draftSent'] = $draft;
$out['renamed'] = $imap->rename_folder('Lists/Threads', 'Lists/Kept');
$out['quota'] = $imap->get_quota();
$out['inboxStatus'] = $conn->status('INBOX', ['MESSAGES', 'UNSEEN', 'UIDNEXT', 'UIDVALIDITY', 'SIZE']);

$imap->close();
echo json_encode($out, JSON_PRETTY_PRINT | JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES), "\n";
