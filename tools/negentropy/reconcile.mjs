// Reconcile two sets with negentropy (nostr-tools' NIP-77 module) and print what it cost.
//
//   node reconcile.mjs CLIENT.bin SERVER.bin [FRAME_LIMIT]
//
// Each file holds records of 40 bytes: an 8-byte big-endian timestamp (seconds)
// and a 32-byte ID.  The client initiates, the server answers, until the client
// has nothing more to say.  Prints one JSON object: round_trips (server replies),
// bytes (every message, both directions, as raw bytes: NIP-77 carries them as hex),
// have and need (the IDs only the client holds, and only the server holds).
import { readFileSync } from 'node:fs'

const here = new URL('./node_modules/nostr-tools/lib/esm/nip77.js', import.meta.url)
const { Negentropy, NegentropyStorageVector } = await import(here.href)

function storage(path) {
  const buf = readFileSync(path)
  if (buf.length % 40 !== 0) throw new Error(`${path}: not a whole number of 40-byte records`)
  const s = new NegentropyStorageVector()
  for (let off = 0; off < buf.length; off += 40) {
    const ts = Number(buf.readBigUInt64BE(off))
    s.insert(ts, buf.subarray(off + 8, off + 40).toString('hex'))
  }
  s.seal()
  return s
}

const [clientPath, serverPath, limitArg] = process.argv.slice(2)
const limit = limitArg ? Number(limitArg) : 2 ** 31 // no practical limit, as anchors.md §1.2
const client = new Negentropy(storage(clientPath), limit)
const server = new Negentropy(storage(serverPath), limit)

let bytes = 0
let roundTrips = 0
const have = new Set()
const need = new Set()
let msg = client.initiate()
while (msg !== null) {
  bytes += msg.length / 2
  const reply = server.reconcile(msg)
  roundTrips += 1
  if (reply === null) break
  bytes += reply.length / 2
  msg = client.reconcile(reply, (id) => have.add(id), (id) => need.add(id))
}
console.log(JSON.stringify({ round_trips: roundTrips, bytes, have: have.size, need: need.size }))
