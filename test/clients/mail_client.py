"""Independent POP3, SMTP and IMAP clients for the tests (Python's poplib, smtplib and imaplib).

Usage: python3 mail_client.py '<json steps>'  -> prints a JSON list, one result per step.
A step is [name, *args]; a step that fails gives {"error": "..."} and the rest still run
(on the same connection, if it is still there). Steps:
  pop <port> <stls|implicit|plain> [source address]   open a POP3 session
  user <name> / pass <password> / stat / uidl / list / retr <n> (base64) / top <n> <lines>
  dele <n> / quit / drop (close without QUIT) / capa / noop
  smtp <port> <starttls|implicit|plain> [source address]  open an SMTP session (EHLO sent)
  ehlo / starttls / login <user> <password> / cmd <line> / send <from> <to,to> <message text>
  imap <port> <starttls|implicit|plain>  open an IMAP session: its capabilities (after STARTTLS)
  imap_login <user> <password> / imap_select <mailbox> (its EXISTS) / imap_search <criteria> (numbers)
  imap_fetch <set> <items> (each literal base64, each line as text) / imap_store <set> <+FLAGS ...> <flags>
  imap_expunge (the expunged numbers) / imap_logout
  signal <file> (creates it) / wait_file <file> (until it exists): a test acts between steps
"""
import base64, imaplib, json, poplib, smtplib, socket, ssl, sys

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE


def sourced(cls, source):
    """A POP3 class whose socket comes from `source` (another loopback address is another client)."""
    class Sourced(cls):
        def _create_socket(self, timeout):
            sock = socket.create_connection((self.host, self.port), timeout, source_address=(source, 0) if source else None)
            return ctx.wrap_socket(sock) if cls is poplib.POP3_SSL else sock
    return Sourced


def text(b):
    return b.decode('latin1') if isinstance(b, bytes) else str(b)


def imap_ok(res):
    """imaplib's (type, data): the data, or the NO/BAD as an error."""
    typ, data = res
    if typ != 'OK':
        raise imaplib.IMAP4.error(f'{typ} {text(data[0]) if data else ""}')
    return [d if isinstance(d, tuple) or d is None else text(d) for d in data]


def main():
    steps = json.loads(sys.argv[1])
    out = []
    pop = smtp = imap = None
    # Every session stays open until the script ends (a new one does not drop the last).
    kept = []
    for step in steps:
        name, args = step[0], step[1:]
        try:
            if name == 'pop':
                port, mode = args[0], args[1]
                source = args[2] if len(args) > 2 else None
                if mode == 'implicit':
                    pop = sourced(poplib.POP3_SSL, source)('127.0.0.1', port, context=ctx, timeout=30)
                else:
                    pop = sourced(poplib.POP3, source)('127.0.0.1', port, timeout=30)
                    if mode == 'stls':
                        pop.stls(context=ctx)
                kept.append(pop)
                r = text(pop.getwelcome())
            elif name == 'user': r = text(pop.user(args[0]))
            elif name == 'pass': r = text(pop.pass_(args[0]))
            elif name == 'stat': r = list(pop.stat())
            elif name == 'uidl': r = [text(l) for l in pop.uidl()[1]]
            elif name == 'list': r = [text(l) for l in pop.list()[1]]
            elif name == 'capa': r = sorted(pop.capa().keys())
            elif name == 'noop': r = text(pop.noop())
            elif name == 'retr':
                resp, lines, _ = pop.retr(args[0])
                r = base64.b64encode(b'\r\n'.join(lines) + b'\r\n').decode()
            elif name == 'top':
                resp, lines, _ = pop.top(args[0], args[1])
                r = [text(l) for l in lines]
            elif name == 'dele': r = text(pop.dele(args[0]))
            elif name == 'quit': r = text(pop.quit())
            elif name == 'drop':
                pop.sock.close()
                r = 'dropped'
            elif name == 'smtp':
                port, mode = args[0], args[1]
                source = (args[2], 0) if len(args) > 2 else None
                if mode == 'implicit':
                    smtp = smtplib.SMTP_SSL('127.0.0.1', port, context=ctx, timeout=30, source_address=source)
                else:
                    smtp = smtplib.SMTP('127.0.0.1', port, timeout=30, source_address=source)
                kept.append(smtp)
                code, msg = smtp.ehlo()
                r = [code, text(msg)]
                if mode == 'starttls':
                    smtp.starttls(context=ctx)
                    code, msg = smtp.ehlo()
                    r = [code, text(msg)]
            elif name == 'ehlo':
                code, msg = smtp.ehlo()
                r = [code, text(msg)]
            elif name == 'starttls':
                r = list(smtp.starttls(context=ctx))
                r = [r[0], text(r[1])]
            elif name == 'login':
                code, msg = smtp.login(args[0], args[1])
                r = [code, text(msg)]
            elif name == 'cmd':
                code, msg = smtp.docmd(args[0])
                r = [code, text(msg)]
            elif name == 'send':
                refused = smtp.sendmail(args[0], args[1].split(','), args[2].encode())
                r = {k: [v[0], text(v[1])] for k, v in refused.items()}
            elif name == 'imap':
                port, mode = args[0], args[1]
                if mode == 'implicit':
                    imap = imaplib.IMAP4_SSL('127.0.0.1', port, ssl_context=ctx, timeout=30)
                else:
                    imap = imaplib.IMAP4('127.0.0.1', port, timeout=30)
                    if mode == 'starttls':
                        imap.starttls(ssl_context=ctx)
                kept.append(imap)
                r = sorted(imap.capabilities)
            elif name == 'imap_login': r = imap_ok(imap.login(args[0], args[1]))
            elif name == 'imap_select': r = int(imap_ok(imap.select(args[0]))[0])
            elif name == 'imap_search': r = [int(n) for n in imap_ok(imap.search(None, args[0]))[0].split()]
            elif name == 'imap_fetch':
                r = [base64.b64encode(d[1]).decode() if isinstance(d, tuple) else text(d) for d in imap_ok(imap.fetch(args[0], args[1]))]
            elif name == 'imap_store': r = [text(d) for d in imap_ok(imap.store(args[0], args[1], args[2]))]
            elif name == 'imap_expunge': r = [int(n) for n in imap_ok(imap.expunge()) if n is not None]
            elif name == 'imap_logout': r = text(imap.logout()[0])
            elif name == 'signal':
                open(args[0], 'w').close()
                r = 'signalled'
            elif name == 'wait_file':
                import os, time
                deadline = time.time() + 120
                while not os.path.exists(args[0]) and time.time() < deadline:
                    time.sleep(0.05)
                r = 'waited'
            else:
                raise ValueError('unknown step ' + name)
            out.append(r)
        except (smtplib.SMTPResponseException) as e:
            out.append({'error': f'{e.smtp_code} {text(e.smtp_error)}'})
        except smtplib.SMTPRecipientsRefused as e:
            out.append({'error': ' '.join(f'{v[0]} {text(v[1])}' for v in e.recipients.values())})
        except Exception as e:  # noqa: BLE001 - every failure is reported to the test
            out.append({'error': text(e.args[0]) if e.args else repr(e)})
    print(json.dumps(out))


main()
