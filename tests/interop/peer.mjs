// A Helia peer that cidfs's interop tests (tests/interop.rs) and scripts/bench-interop.sh drive.
//
//   node peer.mjs [--key SWARM_KEY_FILE] [--listen HOST:PORT] [--dial MULTIADDR]... [--upstream-pnet]
//
// Transport: TCP -> PSK (kubo swarm.key, when --key is given) -> noise -> yamux; identify and
// bitswap 1.2.0 (Helia's). Loopback only: no bootstrap, relay, autonat, upnp, mDNS, DHT or HTTP
// gateways. Content is imported with kubo's `ipfs add --cid-version=1` settings (or kubo's default
// CIDv0 layout with `v0`), every importer option set explicitly.
//
// On start it prints `listening <multiaddr>/p2p/<id>` on stdout, then answers one line per command
// read from stdin (commands run one at a time, in order):
//   add <file> [v0]          -> ok <cid>
//   add-default <file>       -> ok <cid>  (@helia/unixfs's own defaults: no option given)
//   cat <cid> <outfile> [ms] -> ok <bytes> <millis>  (fetches over bitswap; aborts after ms)
//   dial <multiaddr>         -> ok
//   peers                    -> ok <peer id>...
//   quit                     -> ok, then exits
// Failures answer `err <message>`. Logs go to stderr.

import './polyfill.mjs'

const fs = await import('node:fs')
const readline = await import('node:readline')
const { Readable } = await import('node:stream')
const { createHeliaLight } = await import('helia')
const { withLibp2pLight } = await import('@helia/libp2p')
const { withBitswap } = await import('@helia/bitswap')
const { unixfs } = await import('@helia/unixfs')
const { fixedSize } = await import('ipfs-unixfs-importer/chunker')
const { balanced } = await import('ipfs-unixfs-importer/layout')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { multiaddr } = await import('@multiformats/multiaddr')
const { CID } = await import('multiformats/cid')
const { pureJsPreSharedKey, readSwarmKey } = await import('./pnet.mjs')

function parseArgs (argv) {
  const opts = { key: null, listen: '127.0.0.1:0', dial: [], upstreamPnet: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '--key') opts.key = next()
    else if (a === '--listen') opts.listen = next()
    else if (a === '--dial') opts.dial.push(next())
    else if (a === '--upstream-pnet') opts.upstreamPnet = true
    else throw new Error(`unknown argument ${a}`)
  }
  return opts
}

/** kubo's `ipfs add --cid-version=1` (v1) or plain `ipfs add` (v0) layout, every option explicit. */
function importerOptions (version) {
  const v0 = version === 'v0'
  return {
    cidVersion: v0 ? 0 : 1,
    rawLeaves: !v0,
    leafType: 'file', // boxo's legacy (non-raw) leaves are UnixFS File nodes
    reduceSingleLeafToSelf: true,
    chunker: fixedSize({ chunkSize: 262144 }),
    layout: balanced({ maxChildrenPerNode: 174 }),
    fieldOrder: 'links-first',
    wrapWithDirectory: false,
    shardSplitStrategy: 'links-bytes',
    shardSplitThresholdBytes: 262144,
    shardFanoutBits: 8
  }
}

async function main () {
  const opts = parseArgs(process.argv.slice(2))
  const [host, port] = opts.listen.split(':')
  if (host !== '127.0.0.1') throw new Error('--listen must be on 127.0.0.1')

  let connectionProtector
  if (opts.key != null) {
    const keyFile = fs.readFileSync(opts.key)
    if (opts.upstreamPnet) {
      const { preSharedKey } = await import('@libp2p/pnet')
      connectionProtector = preSharedKey({ psk: keyFile })
    } else {
      connectionProtector = pureJsPreSharedKey({ psk: readSwarmKey(keyFile) })
    }
  }

  const libp2pOptions = {
    addresses: { listen: [`/ip4/127.0.0.1/tcp/${port}`] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionProtector,
    peerDiscovery: [],
    services: { identify: identify() }
  }
  const helia = withBitswap(withLibp2pLight(createHeliaLight({}), libp2pOptions))
  await helia.start()
  const fsx = unixfs(helia)
  const libp2p = helia.libp2p

  const addr = libp2p.getMultiaddrs().find(a => a.toString().startsWith('/ip4/127.0.0.1/'))
  if (addr == null) throw new Error('no loopback listen address')
  console.log(`listening ${addr.toString()}`)

  for (const d of opts.dial) {
    await libp2p.dial(multiaddr(d))
  }

  const commands = {
    async add (file, version) {
      const content = Readable.toWeb(fs.createReadStream(file, { highWaterMark: 1 << 20 }))
      const cid = await fsx.addByteStream(content, importerOptions(version))
      return cid.toString()
    },
    async 'add-default' (file) {
      const content = Readable.toWeb(fs.createReadStream(file, { highWaterMark: 1 << 20 }))
      const cid = await fsx.addByteStream(content)
      return cid.toString()
    },
    async cat (cid, outfile, ms) {
      const signal = ms != null ? AbortSignal.timeout(Number(ms)) : undefined
      const out = fs.createWriteStream(outfile)
      const start = performance.now()
      let n = 0
      try {
        for await (const chunk of fsx.cat(CID.parse(cid), { signal })) {
          n += chunk.byteLength
          if (!out.write(chunk)) await new Promise(resolve => out.once('drain', resolve))
        }
      } finally {
        await new Promise(resolve => out.end(resolve))
      }
      return `${n} ${Math.round(performance.now() - start)}`
    },
    async dial (ma) {
      await libp2p.dial(multiaddr(ma))
      return ''
    },
    async peers () {
      return libp2p.getPeers().map(p => p.toString()).join(' ')
    },
    async quit () {
      return ''
    }
  }

  const rl = readline.createInterface({ input: process.stdin, terminal: false })
  for await (const line of rl) {
    const [cmd, ...args] = line.trim().split(/\s+/)
    if (cmd === '') continue
    const f = commands[cmd]
    if (f == null) {
      console.log(`err unknown command ${cmd}`)
      continue
    }
    try {
      const answer = await f(...args)
      console.log(answer === '' ? 'ok' : `ok ${answer}`)
    } catch (err) {
      console.error(err)
      console.log(`err ${String(err?.message ?? err).replace(/\n/g, ' ')}`)
    }
    if (cmd === 'quit') break
  }
  await helia.stop().catch(() => {})
  process.exit(0)
}

main().catch(err => {
  console.error(err)
  console.log(`err ${String(err?.message ?? err).replace(/\n/g, ' ')}`)
  process.exit(1)
})
