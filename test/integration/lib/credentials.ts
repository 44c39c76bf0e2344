/**
 * Real credentials in place of the mocks' placeholders, generated at run time the way the
 * program's `random.RandomPassword` resources would generate them (length, character classes and
 * their minimums, taken from the rendered inputs). Nothing generated here is ever written to the
 * repository.
 */
import * as crypto from "crypto";

const LOWER = "abcdefghijklmnopqrstuvwxyz";
const UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS = "0123456789";
/** The random provider's default special characters. */
const DEFAULT_SPECIAL = "!@#$%&*()-_=+[]{}<>:?";
/**
 * Characters that break a password written into a URI, a SQL literal, a shell word or an ini
 * file. Every password that allows special characters gets all of them, so the tests prove the
 * connection settings never put a password where it would need escaping.
 */
export const HOSTILE = "'\"\\ @:/?#%&$;=";

function pick(alphabet: string): string {
    return alphabet[crypto.randomInt(alphabet.length)]!;
}

/** A password satisfying a RandomPassword's inputs, with {@link HOSTILE} characters when it allows specials. */
export function generatePassword(spec: Record<string, any>): string {
    const length: number = spec.length;
    const special = spec.special !== false;
    const classes: Array<[string, number]> = [];
    if (spec.lower !== false) {
        classes.push([LOWER, spec.minLower ?? 0]);
    }
    if (spec.upper !== false) {
        classes.push([UPPER, spec.minUpper ?? 0]);
    }
    if (spec.numeric !== false) {
        classes.push([DIGITS, spec.minNumeric ?? 0]);
    }
    const specials = special ? `${spec.overrideSpecial ?? DEFAULT_SPECIAL}${HOSTILE}` : "";
    if (special) {
        classes.push([specials, spec.minSpecial ?? 0]);
    }
    const chars: string[] = special ? [...HOSTILE] : [];
    for (const [alphabet, min] of classes) {
        for (let i = 0; i < min; i++) {
            chars.push(pick(alphabet));
        }
    }
    const all = classes.map(([a]) => a).join("");
    while (chars.length < length) {
        chars.push(pick(all));
    }
    if (chars.length > length) {
        throw new Error(`a ${length}-character password cannot hold the required characters`);
    }
    for (let i = chars.length - 1; i > 0; i--) {
        const j = crypto.randomInt(i + 1);
        [chars[i], chars[j]] = [chars[j]!, chars[i]!];
    }
    return chars.join("");
}
