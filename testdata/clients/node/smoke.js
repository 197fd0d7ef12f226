// A new user's first session with node-zookeeper-client through zkgate: CRUD, an
// ephemeral, a watch that fires once, a transaction with a failing op, digest auth.
// Prints one line per step; exits non-zero on the first surprise.
// Usage: node smoke.js HOST:PORT ROOT
'use strict';
const zookeeper = require('node-zookeeper-client');
const [hosts, root] = process.argv.slice(2);
const { Exception, CreateMode, ACL, Id, Permission } = zookeeper;

function call(client, method, ...args) {
  return new Promise((resolve, reject) => {
    client[method](...args, (err, ...rest) => (err ? reject(err) : resolve(rest)));
  });
}

function connect() {
  const client = zookeeper.createClient(hosts, { sessionTimeout: 10000, retries: 0 });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no session within 15 s')), 15000);
    client.once('connected', () => { clearTimeout(timer); resolve(client); });
    client.connect();
  });
}

function expectCode(promise, code, what) {
  return promise.then(
    () => { throw new Error(what + ' succeeded'); },
    (err) => { if (err.getCode() !== code) throw err; });
}

async function main() {
  const zk = await connect();
  console.log('connected session=0x' + zk.getSessionId().toString('hex'));
  await call(zk, 'create', root, Buffer.from('hello'));
  const [data, stat] = await call(zk, 'getData', root);
  if (data.toString() !== 'hello') throw new Error('got ' + data);
  console.log('get', data.toString(), 'version', stat.version);
  await call(zk, 'setData', root, Buffer.from('world'), stat.version);
  await expectCode(call(zk, 'setData', root, Buffer.from('stale'), stat.version), Exception.BAD_VERSION, 'stale set');
  console.log('badversion ok');
  const [eph] = await call(zk, 'create', root + '/eph-', Buffer.from('e'), CreateMode.EPHEMERAL_SEQUENTIAL);
  console.log('ephemeral', eph);

  let fired = 0;
  const watched = new Promise((resolve) => {
    zk.getData(root, (event) => { fired++; resolve(event); }, () => {});
  });
  await call(zk, 'exists', root); // the watch is registered once this round trip is back
  await call(zk, 'setData', root, Buffer.from('changed'), -1);
  const event = await Promise.race([watched, new Promise((_, rej) => setTimeout(() => rej(new Error('watch did not fire')), 10000))]);
  await call(zk, 'setData', root, Buffer.from('again'), -1);
  await call(zk, 'exists', root);
  if (fired !== 1) throw new Error('watch fired ' + fired + ' times');
  console.log('watch fired once', event.getName());

  await expectCode(call(zk.transaction().create(root + '/t1', Buffer.from('1')).check(root, 99), 'commit'),
    Exception.BAD_VERSION, 'transaction');
  const [exists] = await call(zk, 'exists', root + '/t1');
  if (exists) throw new Error('transaction was not rolled back');
  console.log('transaction rolled back');

  zk.addAuthInfo('digest', Buffer.from('alice:secret'));
  await call(zk, 'create', root + '/private', Buffer.from('s'), [new ACL(Permission.ALL, new Id('auth', ''))], CreateMode.PERSISTENT);
  const other = await connect();
  await expectCode(call(other, 'getData', root + '/private'), Exception.NO_AUTH, 'read without auth');
  other.close();
  console.log('acl enforced');

  const [children] = await call(zk, 'getChildren', root);
  console.log('children', children.sort().join(','));
  for (const c of children) await call(zk, 'remove', root + '/' + c, -1);
  await call(zk, 'remove', root, -1);
  await expectCode(call(zk, 'getData', root), Exception.NO_NODE, 'get after delete');
  console.log('deleted');
  zk.close();
  console.log('OK');
}

main().then(() => process.exit(0), (err) => { console.error('FAIL', err && err.stack || err); process.exit(1); });
