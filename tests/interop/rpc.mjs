// Checks cidfs's HTTP RPC API with kubo-rpc-client, the IPFS project's client of kubo's API.
// Driven by tests/interop.rs:
//
//   node rpc.mjs --api http://127.0.0.1:PORT --file FILE --cid CID --peer PEER_ID
//
// FILE is a file whose `cidfs add` CID is CID; PEER_ID is a peer the daemon is connected to.
// Prints one `ok <check>` line per passing check and `PASS` at the end; on the first failure it
// prints `FAIL <check>: <why>` to stderr and exits 1.

import './polyfill.mjs'

const fs = await import('node:fs')
const crypto = await import('node:crypto')
const { create } = await import('kubo-rpc-client')
const { CID } = await import('multiformats/cid')

function parseArgs (argv) {
  const opts = {}
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] == null) throw new Error(`bad argument ${argv[i]}`)
    opts[argv[i].slice(2)] = argv[i + 1]
  }
  for (const k of ['api', 'file', 'cid', 'peer']) {
    if (opts[k] == null) throw new Error(`--${k} is required`)
  }
  return opts
}

class CheckFailed extends Error {}

function assert (cond, why) {
  if (!cond) throw new CheckFailed(why)
}

function equalBytes (a, b) {
  return a.length === b.length && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0
}

async function collect (iterable) {
  const parts = []
  for await (const p of iterable) parts.push(p)
  return Buffer.concat(parts)
}

/** Raw POST/GET without the client, to see the status and body kubo would send. */
async function raw (api, method, path, headers = {}) {
  const res = await fetch(`${api}${path}`, { method, headers })
  const text = await res.text()
  let json = null
  try { json = JSON.parse(text) } catch {}
  return { status: res.status, text, json }
}

function isKuboError (r) {
  return r.json != null && typeof r.json.Message === 'string' && r.json.Message !== '' &&
    typeof r.json.Code === 'number' && r.json.Type === 'error'
}

async function main () {
  const opts = parseArgs(process.argv.slice(2))
  const data = fs.readFileSync(opts.file)
  const ipfs = create({ url: opts.api })
  const checks = []
  const check = (name, fn) => checks.push([name, fn])

  check('add cidVersion 1', async () => {
    const r = await ipfs.add(data, { cidVersion: 1 })
    assert(r.cid.toString() === opts.cid, `add gave ${r.cid}, cidfs add gave ${opts.cid}`)
    assert(r.size > data.length, `size ${r.size} should be the cumulative DAG size`)
  })

  check('add CIDv0 default', async () => {
    const r = await ipfs.add(data.subarray(0, 1000))
    assert(r.cid.version === 0 && r.cid.toString().startsWith('Qm'), `got ${r.cid}`)
  })

  check('cat whole', async () => {
    const got = await collect(ipfs.cat(opts.cid))
    assert(equalBytes(got, data), `cat returned ${got.length} bytes that differ from the file`)
  })

  check('cat offset/length', async () => {
    const ranges = [[0, 1], [1000, 5000], [262143, 2], [data.length - 10, 100], [123457, 700000]]
    for (const [offset, length] of ranges) {
      const got = await collect(ipfs.cat(`/ipfs/${opts.cid}`, { offset, length }))
      const want = data.subarray(offset, offset + length)
      assert(equalBytes(got, want), `cat offset=${offset} length=${length}: ${got.length} bytes, want ${want.length}`)
    }
  })

  check('files.stat /ipfs/<cid>', async () => {
    const st = await ipfs.files.stat(`/ipfs/${opts.cid}`)
    assert(st.cid.toString() === opts.cid, `cid ${st.cid}`)
    assert(st.size === data.length, `size ${st.size}, want ${data.length}`)
    assert(st.type === 'file', `type ${st.type}`)
    assert(st.cumulativeSize > data.length, `cumulativeSize ${st.cumulativeSize}`)
  })

  check('id', async () => {
    const id = await ipfs.id()
    assert(typeof id.id.toString() === 'string' && id.id.toString().startsWith('12D3'), `id ${id.id}`)
    assert(Array.isArray(id.addresses) && id.addresses.length > 0, 'no addresses')
    assert(id.addresses.every(a => a.toString().includes('/p2p/')), `addresses ${id.addresses}`)
    assert(Array.isArray(id.protocols) && id.protocols.includes('/ipfs/bitswap/1.2.0'), `protocols ${id.protocols}`)
    assert(typeof id.agentVersion === 'string' && id.agentVersion !== '', 'no agentVersion')
  })

  check('swarm.peers', async () => {
    const peers = await ipfs.swarm.peers()
    const ids = peers.map(p => p.peer.toString())
    assert(ids.includes(opts.peer), `peers ${ids} do not include ${opts.peer}`)
    assert(peers.every(p => p.addr.toString().startsWith('/ip4/')), 'bad addr')
  })

  check('block.put / block.get / block.stat', async () => {
    const bytes = crypto.randomBytes(3000)
    const cid = await ipfs.block.put(bytes)
    assert(cid.version === 1 && cid.code === 0x55, `block.put gave ${cid} (want a CIDv1 raw)`)
    const got = await ipfs.block.get(cid)
    assert(equalBytes(got, bytes), 'block.get returned other bytes')
    const st = await ipfs.block.stat(cid)
    assert(st.cid.toString() === cid.toString() && st.size === bytes.length, `block.stat ${JSON.stringify(st)}`)
    const pb = await ipfs.block.put(Uint8Array.from([0x0a, 0x04, 0x08, 0x02, 0x18, 0x00]), { format: 'v0' })
    assert(pb.toString() === 'QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH', `v0 block.put gave ${pb}`)
    const pb1 = await ipfs.block.put(Uint8Array.from([0x0a, 0x04, 0x08, 0x02, 0x18, 0x00]), { cidCodec: 'dag-pb' })
    assert(pb1.toString() === 'bafybeif7ztnhq65lumvvtr4ekcwd2ifwgm3awq4zfr3srh462rwyinlb4y', `dag-pb block.put gave ${pb1}`)
  })

  check('pin.add / pin.ls', async () => {
    const { cid } = await ipfs.add(crypto.randomBytes(5000), { cidVersion: 1, pin: false })
    const pinned = await ipfs.pin.add(cid)
    assert(pinned.toString() === cid.toString(), `pin.add gave ${pinned}`)
    const all = []
    for await (const p of ipfs.pin.ls()) all.push(p)
    assert(all.some(p => p.cid.toString() === cid.toString() && p.type === 'recursive'), `pin.ls: ${all.map(p => `${p.cid} ${p.type}`)}`)
    const one = []
    for await (const p of ipfs.pin.ls({ paths: [cid] })) one.push(p)
    assert(one.length === 1 && one[0].cid.toString() === cid.toString(), `pin.ls ${cid}: ${one.map(p => p.cid)}`)
    const rm = await ipfs.pin.rm(cid)
    assert(rm.toString() === cid.toString(), `pin.rm gave ${rm}`)
  })

  check('GET is refused with a kubo error', async () => {
    const r = await raw(opts.api, 'GET', `/api/v0/cat?arg=${opts.cid}`)
    assert(r.status === 405, `status ${r.status}`)
    assert(isKuboError(r), `body ${r.text}`)
  })

  check('a request from an allowed Origin is served', async () => {
    const r = await raw(opts.api, 'POST', '/api/v0/version', { Origin: 'http://127.0.0.1:3000' })
    assert(r.status === 200 && r.json?.Version != null, `status ${r.status}: ${r.text}`)
  })

  check('a request from another Origin (a web page) is refused with a kubo error', async () => {
    const r = await raw(opts.api, 'POST', '/api/v0/version', { Origin: 'http://evil.example' })
    assert(r.status === 403, `status ${r.status}`)
    assert(isKuboError(r), `body ${r.text}`)
  })

  check('unknown command gets a kubo error', async () => {
    const r = await raw(opts.api, 'POST', '/api/v0/no-such-command')
    assert(r.status === 404, `status ${r.status}`)
    assert(isKuboError(r), `body ${r.text}`)
  })

  check('bad CID gets a kubo error', async () => {
    const r = await raw(opts.api, 'POST', '/api/v0/cat?arg=not-a-cid')
    assert(r.status === 500 || r.status === 400, `status ${r.status}`)
    assert(isKuboError(r) && [0, 1].includes(r.json.Code), `body ${r.text}`)
    let err = null
    try { await collect(ipfs.cat('not-a-cid')) } catch (e) { err = e }
    assert(err != null && /cid|invalid|path/i.test(err.message), `client error: ${err?.message}`)
  })

  check('cat of a CID nobody has fails', async () => {
    const missing = CID.parse('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy')
    let err = null
    try { await collect(ipfs.cat(missing, { timeout: 60000 })) } catch (e) { err = e }
    assert(err != null, 'cat of a missing CID succeeded')
  })

  for (const [name, fn] of checks) {
    try {
      await fn()
      console.log(`ok ${name}`)
    } catch (err) {
      console.error(`FAIL ${name}: ${err instanceof CheckFailed ? err.message : (err?.stack ?? err)}`)
      process.exit(1)
    }
  }
  console.log('PASS')
}

main().catch(err => {
  console.error(`FAIL setup: ${err?.stack ?? err}`)
  process.exit(1)
})
