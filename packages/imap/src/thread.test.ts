import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { headers } from './mime.js';
import { formatThreads, thread, threadOrderedSubject, threadReferences, type ThreadableMessage, type ThreadNode } from './thread.js';

interface Spec {
  subject?: string;
  /** Minutes after the epoch the Date: header says; none: no Date: header. */
  at?: number;
  id?: string;
  refs?: string[];
  inReplyTo?: string;
  internal?: number;
}

const msg = (seq: number, s: Spec): ThreadableMessage => {
  const lines: string[] = [];
  if (s.subject !== undefined) lines.push(`Subject: ${s.subject}`);
  if (s.at !== undefined) lines.push(`Date: ${new Date(s.at * 60_000).toUTCString().replace('GMT', '+0000')}`);
  if (s.id) lines.push(`Message-ID: <${s.id}>`);
  if (s.refs) lines.push(`References: ${s.refs.map((r) => `<${r}>`).join('\r\n ')}`);
  if (s.inReplyTo) lines.push(`In-Reply-To: <${s.inReplyTo}>`);
  return { seq, internalDate: (s.internal ?? 0) * 60_000, headers: headers(Buffer.from(lines.map((l) => `${l}\r\n`).join('') + '\r\n')) };
};
const show = (threads: ThreadNode<ThreadableMessage>[]) => formatThreads(threads, (m) => m.seq);

/** A THREAD response's data as nodes (messages are just their numbers), to build mailboxes from. */
function parseThreads(text: string): ThreadNode<number>[] {
  let i = 0;
  const lists = (): ThreadNode<number>[] => {
    const out: ThreadNode<number>[] = [];
    while (text[i] === '(') {
      i++;
      out.push(members());
      i++; // ')'
    }
    return out;
  };
  // thread-members [SP thread-nested], or thread-nested alone (a dummy).
  const members = (): ThreadNode<number> => {
    if (text[i] === '(') return { children: lists() };
    const start = i;
    while (/\d/.test(text[i])) i++;
    const node: ThreadNode<number> = { message: Number(text.slice(start, i)), children: [] };
    if (text[i] === ' ') {
      i++;
      node.children = text[i] === '(' ? lists() : [members()];
    }
    return node;
  };
  return lists();
}

// RFC 5256 §6's example responses.
const RFC_ORDEREDSUBJECT =
  '(166)(167)(168)(169)(172)(170)(171)(173)(174 (175)(176)(178)(181)(180))(179)(177 (183)(182)(188)(184)(185)(186)(187)(189))(190)(191)(192)(193)(194 195)(196 (197)(198))(199)(200 202)(201)(203)(204)(205)(206 207)(208)';
const RFC_REFERENCES =
  '(166)(167)(168)(169)(172)((170)(179))(171)(173)((174)(175)(176)(178)(181)(180))((177)(183)(182)(188 (184)(189))(185 186)(187))(190)(191)(192)(193)((194)(195 196))(197 198)(199)(200 202)(201)(203)(204)(205 206 207)(208)';

describe('formatThreads', () => {
  for (const [name, text] of [
    ['RFC 5256 ORDEREDSUBJECT example', RFC_ORDEREDSUBJECT],
    ['RFC 5256 REFERENCES example', RFC_REFERENCES],
    ['RFC 5256 §4 THREAD response example', '(2)(3 6 (4 23)(44 7 96))'],
    ['a dummy at the top', '((3)(5))'],
  ]) {
    it(`${name} round trips`, () => assert.equal(formatThreads(parseThreads(text), (n) => n), text));
  }
  it('a dummy with a single child is that child', () => assert.equal(formatThreads([{ children: [{ message: 4, children: [] }] }], (n) => n), '(4)'));
  it('no threads', () => assert.equal(formatThreads([], (n: number) => n), ''));
});

describe('THREAD=ORDEREDSUBJECT', () => {
  it("reproduces RFC 5256's example from messages dated in the order it lists them", () => {
    // Each thread one base subject; children are replies; dates follow the listing.
    const messages: ThreadableMessage[] = [];
    let at = 0;
    parseThreads(RFC_ORDEREDSUBJECT).forEach((root, t) => {
      messages.push(msg(root.message!, { subject: `topic ${t}`, at: at++ }));
      for (const c of root.children) messages.push(msg(c.message!, { subject: `Re: topic ${t}`, at: at++ }));
    });
    messages.sort((a, b) => a.seq - b.seq);
    assert.equal(show(threadOrderedSubject(messages)), RFC_ORDEREDSUBJECT);
  });

  it('groups by base subject, orders by sent date, ties by message number', () => {
    const messages = [
      msg(1, { subject: 'a', at: 1 }),
      msg(2, { subject: 'Re: a', at: 3 }),
      msg(3, { subject: 'b', at: 2 }),
      msg(4, { subject: 'RE: A', at: 3 }),
      msg(5, { subject: 'c', at: 5 }),
      msg(6, { subject: 'Fwd: b', at: 6 }),
      msg(7, { subject: '' }), // no Date: the internal date (0), so it comes first
    ];
    assert.equal(show(thread('ORDEREDSUBJECT', messages)), '(7)(1 (2)(4))(3 6)(5)');
  });
});

describe('THREAD=REFERENCES', () => {
  it("reproduces RFC 5256's example: threads by references, dummies for lost parents, subjects merged", () => {
    const messages: ThreadableMessage[] = [];
    let at = 0;
    const add = (seq: number, s: Spec) => messages.push(msg(seq, { id: `m${seq}`, at: at++, ...s }));
    // Walk the example as listed: every message is dated in listing order.
    const chain = (node: ThreadNode<number>, subject: string, refs: string[]) => {
      add(node.message!, { subject, refs: refs.length ? refs : undefined });
      for (let n = node, path = [...refs, `m${node.message}`]; n.children.length === 1; path = [...path, `m${n.message}`]) {
        n = n.children[0];
        add(n.message!, { subject: `Re: ${subject}`, refs: path });
      }
    };
    for (const [t, root] of parseThreads(RFC_REFERENCES).entries()) {
      const topic = `topic ${t}`;
      if (root.message !== undefined) chain(root, topic, []);
      else if (root.children.length === 2) {
        // A dummy over two threads: they have the same subject and neither is a reply.
        for (const c of root.children) chain(c, topic, []);
      } else {
        // A dummy over more: answers to a message that is not in the mailbox.
        for (const c of root.children) {
          add(c.message!, { subject: `Re: ${topic}`, refs: [`lost${t}`] });
          for (const g of c.children) chain(g, `Re: ${topic}`, [`lost${t}`, `m${c.message}`]);
        }
      }
    }
    messages.sort((a, b) => a.seq - b.seq);
    assert.equal(show(threadReferences(messages)), RFC_REFERENCES);
  });

  const cases: [string, [number, Spec][], string][] = [
    [
      "RFC 5256 §4's response: (2)(3 6 (4 23)(44 7 96))",
      [
        [2, { id: '2', subject: 'other', at: 1 }],
        [3, { id: '3', subject: 's', at: 2 }],
        [4, { id: '4', subject: 'Re: s', at: 4, refs: ['3', '6'] }],
        [6, { id: '6', subject: 'Re: s', at: 3, refs: ['3'] }],
        [7, { id: '7', subject: 'Re: s', at: 7, refs: ['3', '6', '44'] }],
        [23, { id: '23', subject: 'Re: s', at: 5, refs: ['3', '6', '4'] }],
        [44, { id: '44', subject: 'Re: s', at: 6, refs: ['3', '6'] }],
        [96, { id: '96', subject: 'Re: s', at: 8, refs: ['3', '6', '44', '7'] }],
      ],
      '(2)(3 6 (4 23)(44 7 96))',
    ],
    [
      'two answers to a lost message: a dummy at the top',
      [
        [3, { id: 'a', subject: 'Re: x', at: 1, refs: ['lost'] }],
        [5, { id: 'b', subject: 'Re: x', at: 2, refs: ['lost'] }],
      ],
      '((3)(5))',
    ],
    ['one answer to a lost message: the dummy goes', [[1, { id: 'a', subject: 'Re: x', refs: ['lost'] }]], '(1)'],
    [
      'a lost message in the middle: its children move up to its parent',
      [
        [1, { id: 'a', subject: 'x', at: 1 }],
        [2, { id: 'b', subject: 'Re: x', at: 2, refs: ['a', 'lost'] }],
        [3, { id: 'c', subject: 'Re: x', at: 3, refs: ['a', 'lost'] }],
      ],
      '(1 (2)(3))',
    ],
    [
      'In-Reply-To when there are no References',
      [
        [1, { id: 'a', subject: 'x', at: 1 }],
        [2, { id: 'b', subject: 'y', at: 2, inReplyTo: 'a' }],
      ],
      '(1 2)',
    ],
    [
      'References win over In-Reply-To',
      [
        [1, { id: 'a', subject: 'x', at: 1 }],
        [2, { id: 'b', subject: 'y', at: 2 }],
        [3, { id: 'c', subject: 'z', at: 3, refs: ['b'], inReplyTo: 'a' }],
      ],
      '(1)(2 3)',
    ],
    [
      'a reference chain keeps links made before (a parent once set stays)',
      [
        [1, { id: 'a', subject: 'x', at: 1 }],
        [2, { id: 'b', subject: 'y', at: 2, refs: ['a'] }],
        [3, { id: 'c', subject: 'z', at: 3, refs: ['other', 'b'] }],
      ],
      '(1 2 3)',
    ],
    [
      'a repeated Message-ID: only the first message keeps it',
      [
        [1, { id: 'a', subject: 'x', at: 1 }],
        [2, { id: 'a', subject: 'y', at: 2 }],
        [3, { id: 'c', subject: 'z', at: 3, refs: ['a'] }],
      ],
      '(1 3)(2)',
    ],
    ['no Message-ID', [[1, { subject: 'x', at: 1 }], [2, { subject: 'y', at: 2 }]], '(1)(2)'],
    [
      'references that loop are not followed round',
      [
        [1, { id: 'a', subject: 'x', at: 1, refs: ['b'] }],
        [2, { id: 'b', subject: 'y', at: 2, refs: ['a'] }],
      ],
      '(2 1)',
    ],
    ['a message referring to itself', [[1, { id: 'a', subject: 'x', refs: ['a'] }]], '(1)'],
    [
      'same subject, neither a reply: a dummy holds both',
      [
        [1, { id: 'a', subject: 'hello', at: 1 }],
        [2, { id: 'b', subject: 'hello', at: 2 }],
      ],
      '((1)(2))',
    ],
    [
      'same subject, a reply without references goes under the original',
      [
        [1, { id: 'a', subject: 'hello', at: 1 }],
        [2, { id: 'b', subject: 'Re: hello', at: 2 }],
      ],
      '(1 2)',
    ],
    [
      'the original comes after its reply: the reply still goes under it',
      [
        [1, { id: 'a', subject: 'Re: hi', at: 1 }],
        [2, { id: 'b', subject: 'hi', at: 2 }],
      ],
      '(2 1)',
    ],
    [
      'two replies, no original: a dummy',
      [
        [1, { id: 'a', subject: 'Re: hi', at: 1 }],
        [2, { id: 'b', subject: 'Fwd: hi', at: 2 }],
      ],
      '((1)(2))',
    ],
    [
      'a thread whose top is a dummy takes in a message of its subject',
      [
        [1, { id: 'a', subject: 'Re: z', at: 1, refs: ['lost'] }],
        [2, { id: 'b', subject: 'Re: z', at: 2, refs: ['lost'] }],
        [3, { id: 'c', subject: 'z', at: 3 }],
      ],
      '((1)(2)(3))',
    ],
    [
      'empty subjects are not merged',
      [
        [1, { id: 'a', subject: '', at: 1 }],
        [2, { id: 'b', subject: 'Re:', at: 2 }],
      ],
      '(1)(2)',
    ],
    [
      'siblings by sent date, ties and missing dates by message number and internal date',
      [
        [1, { id: 'a', subject: 'x', at: 1 }],
        [2, { id: 'b', subject: 'Re: x', at: 9, refs: ['a'] }],
        [3, { id: 'c', subject: 'Re: x', at: 5, refs: ['a'] }],
        [4, { id: 'd', subject: 'Re: x', at: 5, refs: ['a'] }],
        [5, { id: 'e', subject: 'Re: x', internal: 7, refs: ['a'] }],
      ],
      '(1 (3)(4)(5)(2))',
    ],
  ];
  for (const [name, specs, expected] of cases) {
    it(name, () => assert.equal(show(thread('REFERENCES', specs.map(([seq, s]) => msg(seq, s)))), expected));
  }

  it('a chain of 20000 replies (no recursion to overflow)', () => {
    const messages = Array.from({ length: 20_000 }, (_, i) => msg(i + 1, { id: `m${i + 1}`, subject: 'Re: long', at: i, inReplyTo: i ? `m${i}` : undefined }));
    const out = show(threadReferences(messages));
    assert.equal(out, `(${Array.from({ length: 20_000 }, (_, i) => i + 1).join(' ')})`);
  });
});
