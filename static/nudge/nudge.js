/*! nudge.js - Nudge's tracking snippet. No dependencies, no build step.
 *
 *   <script>
 *     window.nudge = window.nudge || function () { (nudge.q = nudge.q || []).push(arguments); };
 *     nudge('init', 'pk_...', { host: 'https://nudge.example.com' });
 *   </script>
 *   <script async src="https://nudge.example.com/static/nudge/nudge.js"></script>
 *
 * Calls made before the script loads wait in nudge.q and run once it does.
 *
 *   nudge('init', writeKey, options)  options (defaults): host (this script's origin),
 *       requireConsent (false), consentCategory (none), autoPage (true: a page view now),
 *       flushInterval (2000 ms), batchSize (20), engagement (false; true or {minSeconds}
 *       = trackEngagement), debug
 *   nudge('track', event, properties)
 *   nudge('identify', userIdOrNull, traits)    the user id is kept for later calls
 *   nudge('page', name, properties)            url, path, title, referrer, search added
 *   nudge('consent', true | false | {Marketing: true, Analytics: false})   see below
 *   nudge('reset')                             on logout: a new anonymous id, no user id
 *   nudge('flush')                             send now; a Promise of {pending, error}
 *   nudge('trackEngagement', {minSeconds: 5})  one page_engaged {seconds, percent} track
 *       when the page is first hidden: visible seconds, deepest scroll in percent
 *   nudge('anonymousId')                       the visitor's id (or null)
 *
 * Identity: the anonymous id (a UUID) lives in the first-party cookie nudge_aid (a year,
 * SameSite=Lax) and in localStorage, either restoring the other; the user id in
 * localStorage. Consent: with requireConsent, nothing is stored or sent until
 * consent(true) (remembered in localStorage); calls before it are ignored.
 * consent(false) forgets the ids and drops what is not sent yet. consentCategory names
 * the category the Source gates on (its "consent category", e.g. 'Marketing'; it
 * implies requireConsent): consent(true) then means {<category>: true}, and consent may
 * be given the visitor's categories as the consent tool has them, {category: boolean},
 * a yes when the category is true (case aside), a no otherwise. Without
 * consentCategory such an object is a yes if any category is true. Once known, the
 * categories go with every message as Segment's context.consent.categoryPreferences,
 * which the server checks too (docs/privacy.md).
 *
 * Delivery: messages queue in localStorage (at most 500; the oldest go first) and go to
 * POST host/api/v1/batch as text/plain (no CORS preflight) every flushInterval or per
 * batchSize; on page hide, by sendBeacon. Network errors, 408, 429 and 5xx are retried
 * with backoff (1 s doubling to 60 s, jittered); another 4xx drops the batch (a 400 or
 * 413 batch is split first, so only the bad message is lost) and logs it. A message
 * leaves the queue only once a request carrying it got a 2xx, so it may be sent twice;
 * the server ignores a repeated messageId. From another origin, list the site's origin on
 * the Source, or the browser hides the answers and the snippet retries (beacons still land).
 */
(function (window, document) {
  'use strict';
  var stub = window.nudge;
  if (stub && stub.loaded) return; // included twice

  var VERSION = '1.1.0'; // 1.1: consentCategory, consent categories sent as context.consent
  var AID = 'nudge_aid', UID = 'nudge_uid', CONSENT = 'nudge_consent';
  var MAX_QUEUE = 500; // stored messages; beyond this the oldest are dropped
  var MAX_BODY = 60000; // bytes: browsers refuse beacons and keepalive fetches over 64 KB
  var RETRY_MIN = 1000, RETRY_MAX = 60000; // ms, doubling per failure, with jitter
  var UTM = { utm_source: 'source', utm_medium: 'medium', utm_campaign: 'name',
    utm_term: 'term', utm_content: 'content' };
  var script = document.currentScript;

  var opts = null, allowed = false, pageViewSent = false, waiting = [];
  var anonymousId = null, userId = null, memoryQueue = [], storedRaw = null, useStorage = true;
  var running = null, inFlight = {}, beaconed = {}, sendLimit = 20;
  var failures = 0, retryAt = 0, lastError = null, timer = null, timerDue = 0;
  var engagement = null;
  var preferences = null; // the visitor's consent categories, once known

  function now() { return Date.now(); }
  function warn() {
    try { console.warn.apply(console, ['[nudge]'].concat([].slice.call(arguments))); } catch (e) {}
  }
  // Whatever goes wrong in here must never break the page.
  function guard(fn) {
    return function () { try { return fn.apply(this, arguments); } catch (e) { warn(e); } };
  }

  // -- storage: localStorage and a first-party cookie, either may be missing ----------
  function lsGet(key) { try { return localStorage.getItem(key); } catch (e) { return null; } }
  function lsSet(key, value) {
    try { localStorage.setItem(key, value); return true; } catch (e) { return false; }
  }
  function lsRemove(key) { try { localStorage.removeItem(key); } catch (e) {} }
  function getCookie(name) {
    try {
      var match = ('; ' + document.cookie).split('; ' + name + '=')[1];
      return match ? decodeURIComponent(match.split(';')[0]) : null;
    } catch (e) { return null; } // a sandboxed frame
  }
  function setCookie(name, value, maxAge) {
    try {
      document.cookie = name + '=' + encodeURIComponent(value) + '; Max-Age=' + maxAge +
        '; Path=/; SameSite=Lax' + (location.protocol === 'https:' ? '; Secure' : '');
    } catch (e) {}
  }

  function queueKey() { return 'nudge_queue:' + opts.writeKey; }
  // Read and written whole each time, so what other tabs queued is kept (and sent).
  function readQueue() {
    if (!useStorage) return memoryQueue.slice();
    var raw = lsGet(queueKey()) || '[]';
    if (raw === storedRaw) return memoryQueue.slice(); // unchanged since our last write
    try {
      var queue = JSON.parse(raw);
      return Array.isArray(queue) ? queue : [];
    } catch (e) { return []; }
  }
  function writeQueue(queue) {
    if (queue.length > MAX_QUEUE) {
      warn('queue full: dropping the', queue.length - MAX_QUEUE, 'oldest message(s)');
      queue = queue.slice(queue.length - MAX_QUEUE);
    }
    memoryQueue = queue;
    storedRaw = queue.length ? JSON.stringify(queue) : '[]';
    if (!useStorage) return;
    if (!queue.length) lsRemove(queueKey());
    else if (!lsSet(queueKey(), storedRaw)) useStorage = false; // full, or blocked
  }
  function unqueue(ids) {
    writeQueue(readQueue().filter(function (m) { return !ids[m.messageId]; }));
  }

  // -- messages -------------------------------------------------------------------------
  function uuid() {
    var b = new Uint8Array(16), hex = '', i;
    if (window.crypto && crypto.getRandomValues) crypto.getRandomValues(b);
    else for (i = 0; i < 16; i++) b[i] = Math.random() * 256;
    b[6] = (b[6] & 15) | 64; // version 4
    b[8] = (b[8] & 63) | 128; // RFC 4122 variant
    for (i = 0; i < 16; i++) hex += (i === 4 || i === 6 || i === 8 || i === 10 ? '-' : '') +
      (b[i] + 256).toString(16).slice(1);
    return hex;
  }
  function pageInfo() {
    return { url: location.href, path: location.pathname, title: document.title,
      referrer: document.referrer, search: location.search };
  }
  function context() {
    var ctx = { page: pageInfo(), userAgent: navigator.userAgent, locale: navigator.language,
      library: { name: 'nudge.js', version: VERSION } };
    try { ctx.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) {}
    if (preferences) ctx.consent = { categoryPreferences: plain(preferences) };
    try {
      new URLSearchParams(location.search).forEach(function (value, key) {
        if (UTM[key]) (ctx.campaign = ctx.campaign || {})[UTM[key]] = value;
      });
    } catch (e) {}
    return ctx;
  }
  // A copy through JSON: later changes by the caller don't leak in, functions drop out.
  function plain(value) {
    var isObject = value && typeof value === 'object' && !Array.isArray(value);
    return isObject ? JSON.parse(JSON.stringify(value)) : {};
  }
  function enqueue(type, fields) {
    if (!allowed) return; // without consent nothing is queued, stored or sent
    var m = { type: type, messageId: uuid(), timestamp: new Date().toISOString(),
      anonymousId: anonymousId, context: context() };
    if (userId) m.userId = userId;
    for (var key in fields) m[key] = fields[key];
    if (opts.debug) console.log('[nudge]', m);
    var queue = readQueue();
    queue.push(m);
    writeQueue(queue);
    schedule(queue.length >= opts.batchSize ? 0 : opts.flushInterval);
  }

  // -- sending --------------------------------------------------------------------------
  function byteSize(text) {
    return window.TextEncoder ? new TextEncoder().encode(text).length : text.length * 3;
  }
  function body(batch) {
    var sentAt = new Date().toISOString(); // with each timestamp, corrects the clock skew
    return JSON.stringify({ writeKey: opts.writeKey, sentAt: sentAt, batch: batch });
  }
  // The first messages of the queue that fit in one request (always at least one).
  function take(queue, limit) {
    var batch = [], bytes = 200;
    for (var i = 0; i < queue.length && batch.length < limit; i++) {
      bytes += byteSize(JSON.stringify(queue[i])) + 1;
      if (batch.length && bytes > MAX_BODY) break;
      batch.push(queue[i]);
    }
    return batch;
  }
  function schedule(delay) {
    if (!allowed) return;
    var due = now() + Math.max(delay, retryAt - now());
    if (timer && timerDue <= due) return;
    clearTimeout(timer);
    timerDue = due;
    timer = setTimeout(guard(function () { timer = null; flush(); }), due - now());
  }
  function backoff(reason, retryAfterSeconds) {
    failures++;
    var delay = Math.min(RETRY_MAX, RETRY_MIN * Math.pow(2, failures - 1));
    delay = delay / 2 + (Math.random() * delay) / 2; // so that visitors don't retry in step
    retryAt = now() + Math.max(delay, Math.min(RETRY_MAX, (retryAfterSeconds || 0) * 1000));
    lastError = String(reason);
    return false;
  }
  // Resolves true to go on with the next batch, false to stop and retry later.
  function post(batch) {
    var ids = {}, text = body(batch);
    batch.forEach(function (m) { ids[m.messageId] = inFlight[m.messageId] = true; });
    function settled() { for (var id in ids) delete inFlight[id]; }
    return Promise.resolve().then(function () {
      // text/plain keeps it a "simple" cross-origin request: no CORS preflight.
      return fetch(opts.host + '/api/v1/batch', { method: 'POST', body: text,
        headers: { 'Content-Type': 'text/plain' }, credentials: 'omit',
        keepalive: byteSize(text) < MAX_BODY });
    }).then(function (res) {
      settled();
      if (res.ok) {
        unqueue(ids);
        failures = 0; retryAt = 0; lastError = null; sendLimit = opts.batchSize;
        return true;
      }
      if (res.status === 429 || res.status === 408 || res.status >= 500) {
        return backoff('HTTP ' + res.status, parseFloat(res.headers.get('Retry-After')));
      }
      if ((res.status === 400 || res.status === 413) && batch.length > 1) {
        sendLimit = Math.ceil(batch.length / 2); // halve until the bad message is alone
        return true;
      }
      unqueue(ids); // any other 4xx will never succeed: drop the batch and say why
      return res.text().then(function (detail) {
        warn('dropped', batch.length, 'message(s): HTTP', res.status, detail);
        return true;
      });
    }, function (error) { settled(); return backoff(error); });
  }
  function drain() {
    var queue = readQueue().filter(function (m) { return !inFlight[m.messageId]; });
    if (!allowed || !queue.length) return Promise.resolve(true);
    return post(take(queue, sendLimit)).then(function (more) { return more ? drain() : false; });
  }
  // Sends all that is queued, backoff or not; resolves to {pending, error}.
  function flush() {
    if (!allowed || !window.fetch) return Promise.resolve({ pending: 0, error: null });
    running = running || drain().then(null, function (e) { warn(e); return false; })
      .then(function (ok) {
        running = null;
        var pending = allowed ? readQueue().length : 0;
        if (pending) schedule(ok ? opts.flushInterval : 0);
        return { pending: pending, error: ok ? null : lastError };
      });
    return running;
  }
  // The page may be gone before a fetch answers: hand the queue to sendBeacon. It stays
  // queued until a fetch sees a 2xx (the server ignores the repeat if the beacon got in).
  function flushOnHide() {
    if (!allowed || !navigator.sendBeacon) return;
    var queue = readQueue().filter(function (m) {
      return !inFlight[m.messageId] && !beaconed[m.messageId];
    });
    while (queue.length) {
      var batch = take(queue, opts.batchSize);
      var blob = new Blob([body(batch)], { type: 'text/plain' });
      if (!navigator.sendBeacon(opts.host + '/api/v1/batch', blob)) return; // over quota
      batch.forEach(function (m) { beaconed[m.messageId] = true; });
      queue = queue.slice(batch.length);
    }
  }

  // -- engagement: visible seconds and scroll depth, sent when the page is hidden ------
  function measureScroll() {
    var root = document.documentElement, body = document.body;
    var height = Math.max(root.scrollHeight, body ? body.scrollHeight : 0);
    var seen = (window.pageYOffset || root.scrollTop || 0) + window.innerHeight;
    var percent = height > 0 ? Math.min(100, Math.round((seen / height) * 100)) : 100;
    engagement.percent = Math.max(engagement.percent, percent);
  }
  function measureVisible() {
    if (engagement.since !== null) engagement.ms += now() - engagement.since;
    engagement.since = document.visibilityState === 'hidden' ? null : now();
  }
  function sendEngagement() {
    if (!engagement || engagement.sent) return;
    measureVisible();
    measureScroll();
    // Once, at the first hide: a hidden page (on mobile above all) may never come back.
    engagement.sent = true;
    var seconds = Math.round(engagement.ms / 1000), page = pageInfo();
    if (seconds < engagement.minSeconds) return;
    enqueue('track', { event: 'page_engaged', properties: { seconds: seconds,
      percent: engagement.percent, url: page.url, path: page.path, title: page.title } });
  }

  // -- consent categories: Segment's categoryPreferences, checked as the server does --
  // {category: boolean} from what consent() was given; null for a plain yes or no.
  function categoriesOf(answer) {
    var plainYes = !!answer && (typeof answer !== 'object' || Array.isArray(answer));
    if (plainYes && opts.consentCategory) {
      var only = {};
      only[opts.consentCategory] = true;
      return only;
    }
    if (!answer || plainYes) return null;
    var categories = {};
    for (var key in answer) {
      var own = Object.prototype.hasOwnProperty.call(answer, key);
      if (own && typeof answer[key] === 'boolean') categories[key] = answer[key];
    }
    return categories;
  }
  function grants(answer, categories) {
    if (!categories) return !!answer;
    var wanted = (opts.consentCategory || '').toLowerCase(), seen = false;
    for (var key in categories) {
      if (wanted && key.toLowerCase() !== wanted) continue;
      if (categories[key] === true) seen = true;
      else if (wanted) return false; // two spellings that disagree: no
    }
    return seen;
  }
  // The answer given on an earlier page (until consent(false)): true if it was a yes.
  function restoreConsent() {
    var stored = lsGet(CONSENT), answer = stored === 'granted';
    if (!stored) return false;
    if (!answer) { // the categories, as JSON
      try { answer = JSON.parse(stored); } catch (e) { return false; }
    }
    var categories = categoriesOf(answer);
    if (!grants(answer, categories)) return false;
    preferences = categories;
    return true;
  }

  // -- commands -------------------------------------------------------------------------
  function start() {
    allowed = true;
    anonymousId = getCookie(AID) || lsGet(AID) || uuid();
    setCookie(AID, anonymousId, 31536000); // a year; either store restores the other
    lsSet(AID, anonymousId);
    userId = lsGet(UID);
    if (opts.autoPage && !pageViewSent) commands.page();
    schedule(opts.flushInterval); // with whatever earlier pages left queued
  }
  function onHide() {
    sendEngagement();
    flushOnHide();
  }
  var commands = {
    init: function (writeKey, options) {
      if (opts) return warn('init called twice');
      if (!writeKey || typeof writeKey !== 'string') return warn('init needs a write key');
      var o = options || {};
      var host = o.host || location.origin;
      try { host = o.host || new URL(script.src).origin; } catch (e) {} // inline: no src
      var category = typeof o.consentCategory === 'string' ? o.consentCategory : '';
      opts = { writeKey: writeKey, host: String(host).replace(/\/+$/, ''),
        requireConsent: !!o.requireConsent || !!category, consentCategory: category,
        autoPage: o.autoPage !== false,
        flushInterval: o.flushInterval > 0 ? +o.flushInterval : 2000,
        batchSize: Math.min(o.batchSize > 0 ? +o.batchSize : 20, 100), debug: !!o.debug };
      sendLimit = opts.batchSize;
      window.addEventListener('pagehide', guard(onHide));
      document.addEventListener('visibilitychange', guard(function () {
        if (engagement) measureVisible();
        if (document.visibilityState === 'hidden') onHide();
      }));
      window.addEventListener('online', guard(function () { retryAt = 0; schedule(0); }));
      if (o.engagement) commands.trackEngagement(o.engagement);
      // A yes given on an earlier page holds until consent(false).
      if (restoreConsent() || !opts.requireConsent) start();
      waiting.splice(0).forEach(guard(run));
    },
    track: function (event, properties) {
      if (!event || typeof event !== 'string') return warn('track needs an event name');
      enqueue('track', { event: event, properties: plain(properties) });
    },
    identify: function (id, traits) {
      if (id && typeof id === 'object') { traits = id; id = null; } // identify(traits)
      if (!allowed) return;
      if (id !== null && id !== undefined && id !== '') {
        userId = String(id);
        lsSet(UID, userId);
      }
      enqueue('identify', { traits: plain(traits) });
    },
    page: function (name, properties) {
      if (name && typeof name === 'object') { properties = name; name = null; } // page(props)
      if (!allowed) return;
      pageViewSent = true;
      var props = pageInfo(), extra = plain(properties);
      for (var key in extra) props[key] = extra[key];
      enqueue('page', name ? { name: String(name), properties: props } : { properties: props });
    },
    consent: function (answer) {
      var categories = categoriesOf(answer);
      if (grants(answer, categories)) {
        preferences = categories;
        lsSet(CONSENT, categories ? JSON.stringify(categories) : 'granted');
        if (!allowed) start();
        return;
      }
      // Withdrawn (or the category declined): forget the visitor and what is not sent
      // yet, and stay quiet.
      preferences = null;
      writeQueue([]);
      allowed = false;
      clearTimeout(timer);
      timer = null;
      setCookie(AID, '', 0);
      [AID, UID, CONSENT].forEach(lsRemove);
      anonymousId = userId = null;
    },
    reset: function () { // on logout: a new visitor from here on
      userId = null;
      lsRemove(UID);
      if (!allowed) return;
      anonymousId = uuid();
      setCookie(AID, anonymousId, 31536000);
      lsSet(AID, anonymousId);
    },
    flush: flush,
    trackEngagement: function (options) {
      if (engagement) return; // once per page
      var min = options && typeof options.minSeconds === 'number' ? options.minSeconds : 5;
      engagement = { minSeconds: min, ms: 0, since: null, percent: 0, sent: false };
      measureVisible();
      measureScroll();
      window.addEventListener('scroll', guard(measureScroll), { passive: true });
    },
    anonymousId: function () { return anonymousId; }
  };
  function run(args) {
    var name = args[0];
    if (!commands.hasOwnProperty(name)) return warn('unknown command', name);
    if (!opts && name !== 'init') return void waiting.push(args); // until init
    return commands[name].apply(null, [].slice.call(args, 1));
  }

  var nudge = guard(function () { return run(arguments); });
  nudge.loaded = true;
  nudge.version = VERSION;
  window.nudge = nudge;
  [].slice.call((stub && stub.q) || []).forEach(function (args) { nudge.apply(null, args); });
})(window, document);
