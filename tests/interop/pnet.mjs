// libp2p private-network (PSK v1) connection protector: @libp2p/pnet 3.0.27's protector with its
// cipher swapped for a pure-JS XSalsa20 (@noble/ciphers).
//
// Why: @libp2p/pnet 3.0.27 uses the `xsalsa20` package, whose WebAssembly memory grows with the
// bytes that pass through it, so a connection dies after ~48 MiB with
// `WebAssembly.Memory.grow(): Maximum memory size exceeded` (fixed upstream in js-libp2p PR #3585,
// not released yet). Everything else is the upstream code: each side writes a random 24-byte nonce,
// then XORs its output with XSalsa20(psk, own nonce) and its input with XSalsa20(psk, peer nonce).
// Run peer.mjs with --upstream-pnet to use the unpatched @libp2p/pnet.

import { xsalsa20 } from '@noble/ciphers/salsa.js'
import { AbstractMultiaddrConnection, byteStream } from '@libp2p/utils'

const NONCE_LENGTH = 24
const KEY_LENGTH = 32
const BLOCK = 64

/** Reads a kubo swarm.key: `/key/swarm/psk/1.0.0/`, `/base16/` | `/base64/` | `/bin/`, key. */
export function readSwarmKey (bytes) {
  const text = Buffer.from(bytes).toString('latin1')
  const lines = text.split(/\r?\n/)
  if (lines[0] !== '/key/swarm/psk/1.0.0/') throw new Error('swarm key: bad header')
  let key
  if (lines[1] === '/base16/') key = Buffer.from((lines[2] ?? '').trim(), 'hex')
  else if (lines[1] === '/base64/') key = Buffer.from((lines[2] ?? '').trim(), 'base64')
  else if (lines[1] === '/bin/') key = Buffer.from(text.slice(text.indexOf('/bin/') + 6), 'latin1')
  else throw new Error('swarm key: unknown encoding')
  if (key.length < KEY_LENGTH) throw new Error('swarm key: key shorter than 32 bytes')
  return new Uint8Array(key.subarray(0, KEY_LENGTH))
}

/** One direction's XSalsa20 keystream, applied to consecutive chunks of any length. */
class XorStream {
  constructor (key, nonce) {
    this.key = key
    this.nonce = nonce
    this.pos = 0
  }

  update (data) {
    const skip = this.pos % BLOCK
    const counter = Math.floor(this.pos / BLOCK)
    this.pos += data.byteLength
    if (skip === 0) return xsalsa20(this.key, this.nonce, data, undefined, counter)
    const padded = new Uint8Array(skip + data.byteLength)
    padded.set(data, skip)
    return xsalsa20(this.key, this.nonce, padded, undefined, counter).subarray(skip)
  }
}

class BoxMessageStream extends AbstractMultiaddrConnection {
  constructor (init) {
    super({ ...init, remoteAddr: init.maConn.remoteAddr, direction: init.maConn.direction })
    this.inboundXor = new XorStream(init.psk, init.remoteNonce)
    this.outboundXor = new XorStream(init.psk, init.localNonce)
    this.maConn = init.maConn
    this.maConn.addEventListener('message', (evt) => {
      const data = evt.data
      if (data instanceof Uint8Array) {
        this.onData(this.inboundXor.update(data))
      } else {
        for (const buf of data) this.onData(this.inboundXor.update(buf))
      }
    })
    this.maConn.addEventListener('drain', () => { this.onMuxerDrain() })
    this.maConn.addEventListener('close', (evt) => {
      if (evt.error != null) {
        if (evt.local) this.abort(evt.error)
        else this.onRemoteReset()
      } else {
        this.onTransportClosed()
      }
    })
  }

  async sendClose (options) { await this.maConn.close(options) }

  sendData (data) {
    return {
      sentBytes: data.byteLength,
      canSendMore: this.maConn.send(this.outboundXor.update(data.subarray()))
    }
  }

  sendReset (err) { this.maConn.abort(err) }
  sendPause () { this.maConn.pause() }
  sendResume () { this.maConn.resume() }
}

class PreSharedKeyConnectionProtector {
  constructor (init) {
    this.psk = init.psk
    this.timeout = init.timeout ?? 1000
  }

  [Symbol.toStringTag] = '@libp2p/pnet'

  async protect (connection, options) {
    const log = connection.log.newScope('pnet')
    const localNonce = crypto.getRandomValues(new Uint8Array(NONCE_LENGTH))
    options ??= { signal: AbortSignal.timeout(this.timeout) }
    const bytes = byteStream(connection)
    const [result] = await Promise.all([
      bytes.read({ bytes: NONCE_LENGTH, ...options }),
      bytes.write(localNonce, options)
    ])
    log('exchanged nonces')
    return new BoxMessageStream({
      localNonce,
      remoteNonce: result.subarray(),
      psk: this.psk,
      maConn: bytes.unwrap(),
      log
    })
  }
}

/** Drop-in for `preSharedKey` from @libp2p/pnet; `psk` is the 32-byte key (see readSwarmKey). */
export function pureJsPreSharedKey (init) {
  return () => new PreSharedKeyConnectionProtector(init)
}
