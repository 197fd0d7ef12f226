// A node-zookeeper-client session that zkgate moves to another member: it holds an
// ephemeral and a data watch, then waits (the test kills or pauses its member meanwhile)
// and reports what it saw. Usage: node move.js HOST:PORT ROOT. Prints READY 0x<session>,
// then reads lines from stdin: "write" sets ROOT without waiting for the answer; "go"
// prints SESSION, EPHEMERAL, WATCH and STATES lines and DONE, and exits.
'use strict';
const zookeeper = require('node-zookeeper-client');
const readline = require('readline');
const [hosts, root] = process.argv.slice(2);

function call(client, method, ...args) {
  return new Promise((resolve, reject) => {
    client[method](...args, (err, ...rest) => (err ? reject(err) : resolve(rest)));
  });
}

async function main() {
  const zk = zookeeper.createClient(hosts, { sessionTimeout: 10000, retries: 0 });
  const states = [];
  zk.on('state', (s) => states.push(s.name));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no session within 15 s')), 15000);
    zk.once('connected', () => { clearTimeout(timer); resolve(); });
    zk.connect();
  });
  const sid = zk.getSessionId().toString('hex');
  await call(zk, 'create', root + '/eph', Buffer.from('e'), zookeeper.CreateMode.EPHEMERAL);
  const events = [];
  const fired = new Promise((resolve) => {
    zk.getData(root, (ev) => { events.push(ev.getName()); resolve(); }, () => {});
  });
  await call(zk, 'exists', root);
  const seen = states.length;
  console.log('READY 0x' + sid);
  const rl = readline.createInterface({ input: process.stdin });
  await new Promise((resolve) => rl.on('line', (line) => {
    if (line.trim() === 'write') {
      zk.setData(root, Buffer.from('w'), -1, () => {});
    } else {
      resolve();
    }
  }));
  rl.close();
  // back on a session, if the client had to reconnect
  for (let i = 0; i < 100 && zk.getState() !== zookeeper.State.SYNC_CONNECTED; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  console.log('SESSION 0x' + zk.getSessionId().toString('hex'));
  const [, stat] = await call(zk, 'getData', root + '/eph');
  console.log('EPHEMERAL owner=0x' + stat.ephemeralOwner.toString('hex'));
  await Promise.race([fired, new Promise((resolve) => setTimeout(resolve, 10000))]);
  console.log('WATCH ' + events.join(' '));
  console.log('STATES ' + (states.slice(seen).join(' ') || 'none'));
  zk.close();
  console.log('DONE');
}

main().catch((err) => { console.error('FAIL', err); process.exit(1); });
