// Sign-In with Ethereum from the browser: an EIP-1193 provider (window.ethereum) signs the
// EIP-4361 message the server offers (personal_sign); the server checks it and links the wallet.

import { api } from "./client.js";

/** The browser's EIP-1193 provider, or null when there is no wallet. */
export function provider() {
  const eth = window.ethereum;
  return eth && typeof eth.request === "function" ? eth : null;
}

function utf8Hex(text) {
  return `0x${[...new TextEncoder().encode(text)].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/**
 * Ask the wallet for an account, sign the server's message with it, and verify it: with
 * `token` the wallet is linked to that account; without, the answer carries a viewer token
 * for a wallet-only user. Throws ApiError (the server's refusal) or the wallet's own error.
 */
export async function signInWithEthereum(token = null) {
  const eth = provider();
  if (!eth) throw new Error("No Ethereum wallet in this browser.");
  const [address] = await eth.request({ method: "eth_requestAccounts" });
  if (!address) throw new Error("The wallet shared no account.");
  let chainId;
  try {
    chainId = Number.parseInt(await eth.request({ method: "eth_chainId" }), 16) || undefined;
  } catch {
    chainId = undefined;
  }
  const offer = await api("/v1/auth/wallet/nonce", {
    method: "POST",
    body: chainId ? { address, chainId } : { address },
  });
  const signature = await eth.request({
    method: "personal_sign",
    params: [utf8Hex(offer.message), address],
  });
  return api("/v1/auth/wallet/verify", {
    method: "POST",
    token,
    body: { message: offer.message, signature },
  });
}

/** "0x1234…abcd ≥ 1" for each requirement, for people. */
export function describeRequirements(required) {
  const list = Array.isArray(required) ? required : required ? [required] : [];
  return list.map((need) => {
    const address = need.contractAddress ?? "";
    const short = `${address.slice(0, 6)}…${address.slice(-4)}`;
    const id = need.tokenId != null ? ` #${need.tokenId}` : "";
    const chain = need.chainId ? ` (chain ${need.chainId})` : "";
    return `at least ${need.minBalance} of ${short}${id}${chain}`;
  });
}
