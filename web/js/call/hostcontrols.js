/*
 * Host powers in the call: roles and their badges, the People panel's per-person host actions
 * (make / remove co-host, make host, lower hand: entries of participants.js ROW_ACTIONS call
 * the handlers made here), "Mute all", and what my own role lets me see ("End meeting for
 * all" is the host's alone; co-hosts have every other host control).
 *
 * Hooks: #mute-all, #end-room, #open-settings
 */

/** Whether a role has host powers (the host and co-hosts). */
export const hasHostPowers = (role) => role === "host" || role === "cohost";

/** The badge a participant's row shows: "Host", "Co-host", "Guest" (no account) or "". */
export function roleLabel(p) {
  if (p.role === "host") return "Host";
  if (p.role === "cohost") return "Co-host";
  return p.guest || (p.user && p.user.guest) ? "Guest" : "";
}

/** What a role change means to me, for a notice (null: nothing worth saying). */
export function myRoleNotice(before, after) {
  if (after === "host") return "You are now the host of this meeting.";
  if (after === "cohost") return before === "host" ? "You handed the host role over; you are now a co-host." : "You are now a co-host: you can let people in and manage the meeting.";
  return hasHostPowers(before) ? "You are no longer a co-host." : null;
}

/** What someone else's role change means, for a notice. */
export function roleNotice(name, role) {
  if (role === "host") return `${name} is now the host.`;
  if (role === "cohost") return `${name} is now a co-host.`;
  return `${name} is no longer a co-host.`;
}

export class HostControls {
  /** client(): the RoomClient now; notify(text) shows a notice. */
  constructor({ client, notify }) {
    this.client = client;
    this.notify = notify;
    this.muteAllButton = document.getElementById("mute-all");
    this.endButton = document.getElementById("end-room");
    this.settingsButton = document.getElementById("open-settings");
    this.muteAllButton.addEventListener("click", () => {
      if (this.client().muteAll()) this.notify("Asked everyone to mute (hosts and co-hosts keep their microphones).");
    });
  }

  /** Row action handlers for ParticipantsPanel (peerId, name). */
  handlers() {
    const send = (fn, text) => (peerId, name) => {
      if (fn(this.client(), peerId)) this.notify(text(name));
    };
    return {
      onPromote: send((c, id) => c.promote(id, "cohost"), (name) => `Making ${name} a co-host…`),
      onDemote: send((c, id) => c.demote(id), (name) => `Taking co-host away from ${name}…`),
      onMakeHost: (peerId, name) => {
        if (!window.confirm(`Make ${name} the host? You will stay a co-host.`)) return;
        if (this.client().promote(peerId, "host")) this.notify(`Handing the host role to ${name}…`);
      },
      onLowerHand: send((c, id) => c.lowerHand(id), (name) => `Lowered ${name}'s hand.`),
    };
  }

  /** Show what my role allows (after ParticipantsPanel.render, which shows the host block). */
  render(role) {
    this.endButton.hidden = role !== "host";
    this.muteAllButton.hidden = !hasHostPowers(role);
    this.settingsButton.hidden = !hasHostPowers(role);
  }
}
