// Helia 7 / libp2p 3 target Node 22; Node 20 lacks Promise.withResolvers. Imported first by the
// test scripts, before any libp2p module loads.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
