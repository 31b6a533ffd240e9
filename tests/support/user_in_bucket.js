// Parker Flight's userInBucket(userId, rollout), as its TypeScript computes it:
// murmurhash-js's murmur3 of the user id, seed 0, modulo 100. Reads one user id
// per line on stdin, prints "<id> <bucket>" per line.
const { murmur3 } = require("murmurhash-js");

const bucketOf = (userId) => murmur3(userId, 0) % 100;

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  for (const id of input.split("\n").filter(Boolean)) {
    console.log(`${id} ${bucketOf(id)}`);
  }
});
