/*
 * The users panel: search, a page of users with their state and actions (verify, make or
 * unmake admin, disable or enable, reset sign-in throttles, delete), add a user, invite.
 *
 * Hooks: #users tbody > tr[data-user-id]; #user-search, #users-pager, #create-user, #invite
 */

import { bindForm, errorText } from "../forms.js";
import { changeUser, createUser, deleteUser, invite, resetThrottles, searchUsers } from "./api.js";
import { actionButton, renderPager, row, tag, when } from "./table.js";

const PAGE = 20;

export class UsersPanel {
  /** me: the signed-in admin; changed(): runs after every change (the audit log reloads). */
  constructor(me, changed) {
    this.me = me;
    this.changed = changed;
    this.query = { q: "", limit: PAGE, offset: 0 };
    this.body = document.querySelector("#users tbody");
    this.message = document.getElementById("users-message");
    this.pager = document.getElementById("users-pager");
    document.getElementById("user-search").addEventListener("submit", (event) => {
      event.preventDefault();
      this.load({ q: document.getElementById("user-q").value.trim(), offset: 0 });
    });
    this.bindForms();
  }

  async load(changes = {}) {
    Object.assign(this.query, changes);
    const result = await searchUsers(this.query);
    if (!result.ok) {
      this.message.textContent = errorText(result);
      return;
    }
    this.message.textContent = "";
    this.body.replaceChildren(...result.data.users.map((user) => this.render(user)));
    renderPager(this.pager, result.data, (offset) => this.load({ offset }));
  }

  render(user) {
    const state = [
      user.is_admin ? tag("admin", "is-admin") : "",
      user.disabled ? tag("disabled", "is-disabled") : "",
      user.verified ? "" : tag("unverified"),
    ].filter(Boolean);
    return row(
      [user.username, user.email, state.length ? state : "active", when(user.last_login_at), this.actions(user)],
      { userId: String(user.id), username: user.username },
    );
  }

  actions(user) {
    const run = (call) => async () => this.apply(await call());
    const self = user.id === this.me.id; // the server refuses these for oneself: not offered
    const buttons = [];
    if (!user.verified) buttons.push(actionButton("Verify", run(() => changeUser(user.id, { verified: true }))));
    if (!user.is_admin) buttons.push(actionButton("Make admin", run(() => changeUser(user.id, { is_admin: true }))));
    if (user.is_admin && !self) buttons.push(actionButton("Remove admin", run(() => changeUser(user.id, { is_admin: false }))));
    if (!self) {
      const disabled = !user.disabled;
      buttons.push(actionButton(disabled ? "Disable" : "Enable", run(() => changeUser(user.id, { disabled }))));
    }
    buttons.push(actionButton("Reset sign-in limits", run(() => resetThrottles(user.id))));
    if (!self) {
      buttons.push(actionButton("Delete", async () => {
        if (globalThis.confirm(`Delete ${user.username} and everything they own? This cannot be undone.`)) {
          await this.apply(await deleteUser(user.id));
        }
      }, { danger: true }));
    }
    return buttons;
  }

  async apply(result) {
    if (!result.ok) {
      this.message.textContent = errorText(result);
      return;
    }
    await this.load();
    this.changed();
  }

  bindForms() {
    const created = document.getElementById("create-user");
    bindForm(created, {
      submit: (values) => createUser({
        ...values, admin: created.elements.admin.checked, verified: created.elements.verified.checked,
      }),
      onSuccess: () => {
        created.reset();
        this.load();
        this.changed();
      },
    });
    const invitation = document.getElementById("invite");
    const link = document.getElementById("invite-link");
    bindForm(invitation, {
      submit: (values) => invite({ email: values.email, send: invitation.elements.send.checked }),
      onSuccess: (result) => {
        link.textContent = `Sign-up link (works once): ${result.data.link}`;
        link.hidden = false;
        invitation.reset();
        this.changed();
      },
    });
  }
}
