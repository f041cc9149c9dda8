// illusort review: clicks and keys call the server's actions (the library's name/merge/move);
// the page then reloads to show OUT as it now is. No build step, no dependencies.
'use strict';
(() => {
  const token = document.querySelector('meta[name="illusort-token"]').content;
  const main = document.querySelector('main');
  const folder = main.dataset.folder;
  const $ = (id) => document.getElementById(id);
  const figures = () => [...document.querySelectorAll('figure[data-dest]')];
  const say = (text, error) => { const m = $('message'); m.textContent = text; m.classList.toggle('error', !!error); };
  const focused = () => document.activeElement && document.activeElement.closest('figure[data-dest], .pair');
  const picked = () => {
    const chosen = figures().filter((f) => f.classList.contains('selected'));
    const here = focused();
    return chosen.length ? chosen : here && here.dataset.dest ? [here] : [];
  };
  const files = (list) => list.map((f) => f.dataset.dest);
  const count = () => { $('count').textContent = `${figures().filter((f) => f.classList.contains('selected')).length} selected`; };

  async function act(name, body) {
    say('working…');
    let answer = {};
    let response;
    try {
      response = await fetch(`/action/${name}`, {method: 'POST', body: JSON.stringify(body || {}),
        headers: {'Content-Type': 'application/json', 'X-Illusort-Token': token}});
      answer = await response.json();
    } catch (e) {
      say(`no answer from illusort review (${e}); is it still running?`, true);
      return;
    }
    if (!response.ok) { say(answer.error || response.statusText, true); return; }
    sessionStorage.setItem('illusort-message', `${answer.message} (u undoes it)`);
    if (answer.go) location.assign(answer.go); else location.reload();
  }

  const need = (list) => { if (!list.length) say('select a picture first (click it, or x)', true); return list.length > 0; };
  const accept = (list) => need(list) && act('accept', {files: files(list)});
  const reject = (list) => need(list) && act('reject', {files: files(list)});
  const send = () => { const to = $('target').value.trim(); const list = picked();
    if (!to) { $('target').focus(); return; }
    if (need(list)) act('move', {files: files(list), to}); };
  const aside = () => { const list = picked(); if (need(list)) act('move', {files: files(list), to: 'not-a-character'}); };
  const rename = () => { const name = $('name').value.trim();
    if (name && name !== folder) act('name', {folder, name}).then(() => {}); };
  const merge = () => { const into = $('into').value.trim(); if (!into) { $('into').focus(); return; }
    act('merge', {into, others: [folder]}); };
  const pair = (el, yes) => el && act(yes ? 'accept' : 'reject', {pair: el.dataset.pair});

  function step(by) {
    const all = figures().length ? figures() : [...document.querySelectorAll('.pair')];
    if (!all.length) return;
    const at = all.indexOf(focused());
    const next = all[Math.max(0, Math.min(all.length - 1, at < 0 ? 0 : at + by))];
    next.focus();
    next.scrollIntoView({block: 'nearest'});
  }
  const toggle = (f) => { if (f && f.dataset.dest) { f.classList.toggle('selected'); count(); } };

  document.addEventListener('click', (event) => {
    const button = event.target.closest('button');
    const figure = event.target.closest('figure[data-dest]');
    if (button && figure && button.classList.contains('accept')) return accept([figure]);
    if (button && figure && button.classList.contains('reject')) return reject([figure]);
    if (button && button.closest('.pair')) return pair(button.closest('.pair'), button.classList.contains('yes'));
    if (figure) { event.preventDefault(); figure.focus(); toggle(figure); }
  });
  document.addEventListener('dblclick', (event) => {
    const figure = event.target.closest('figure[data-dest]');
    if (figure) window.open(figure.querySelector('a').href, '_blank', 'noopener');
  });
  const buttons = {send, aside, undo: () => act('undo'), merge, accept: () => accept(picked())};
  for (const [id, run] of Object.entries(buttons)) if ($(id)) $(id).addEventListener('click', run);
  for (const [id, run] of [['target', send], ['into', merge], ['name', rename]]) {
    if ($(id)) $(id).addEventListener('keydown', (event) => { if (event.key === 'Enter') run(); });
  }

  document.addEventListener('keydown', (event) => {
    if (event.target.matches('input')) { if (event.key === 'Escape') event.target.blur(); return; }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const here = focused();
    const keys = {
      j: () => step(1), ArrowRight: () => step(1), k: () => step(-1), ArrowLeft: () => step(-1),
      x: () => toggle(here), ' ': () => toggle(here),
      a: () => (here && here.classList.contains('pair') ? pair(here, true) : accept(picked())),
      r: () => (here && here.classList.contains('pair') ? pair(here, false) : reject(picked())),
      y: () => pair(here && here.closest('.pair'), true), n: () => pair(here && here.closest('.pair'), false),
      t: () => $('target').focus(), d: aside, u: () => act('undo'),
      e: () => $('name') && $('name').select(), m: () => $('into') && $('into').focus(),
      o: () => here && here.dataset.dest && window.open(here.querySelector('a').href, '_blank', 'noopener'),
      Escape: () => { figures().forEach((f) => f.classList.remove('selected')); count(); },
    };
    if (keys[event.key]) { event.preventDefault(); keys[event.key](); }
  });

  const last = sessionStorage.getItem('illusort-message');
  if (last) { say(last); sessionStorage.removeItem('illusort-message'); }
})();
