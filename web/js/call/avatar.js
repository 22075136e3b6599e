/*
 * Camera-off avatars: a letter on a coloured disc. The colour comes from the person's user id
 * (the same number on every page), never from the name as one page shows it ("alice (You)" on
 * her own page, "alice" on the others'), so everyone sees the same colour for a person.
 */

/** The first letter of a name, for avatars. */
export function initialOf(name) {
  return (String(name || "?").trim().charAt(0) || "?").toUpperCase();
}

/**
 * A hue (0–359) for a user: from the id when there is one, else from the username. Steps of
 * the golden angle keep neighbours (ids 1, 2, 3…) far apart on the colour wheel.
 */
export function avatarHue(user) {
  let n;
  if (user && Number.isInteger(user.id)) {
    n = user.id;
  } else {
    const key = user && user.id != null ? String(user.id) : String((user && user.username) || "");
    n = 0;
    for (const ch of key) n = (n * 31 + ch.codePointAt(0)) % 100003;
  }
  return Math.round((n * 137.508 + 210) % 360);
}
