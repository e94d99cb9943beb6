function reveal(el){for(var n=el;n;n=n.parentElement){if(n.tagName==='DETAILS')n.open=true;
if(n.tagName==='TBODY'&&n.classList.contains('vf'))n.classList.add('open');}}
function openTarget(){var id=decodeURIComponent(location.hash.slice(1));if(!id)return;
var el=document.getElementById(id);if(!el)return;reveal(el);
el.scrollIntoView({block:el.tagName==='TR'?'center':'start'});}
window.addEventListener('hashchange',openTarget);window.addEventListener('load',openTarget);
function applyFilter(){var only=document.getElementById('nonpass').checked;
var q=document.getElementById('q').value.toLowerCase();
document.querySelectorAll('tr.row').forEach(function(tr){var ok=true;
if(only&&tr.dataset.allpass==='1')ok=false;
if(q&&tr.dataset.search.indexOf(q)<0)ok=false;tr.classList.toggle('hidden',!ok);});
document.querySelectorAll('tr.sec').forEach(function(sec){var n=sec.nextElementSibling,any=false;
while(n&&!n.classList.contains('sec')){if(!n.classList.contains('hidden'))any=true;n=n.nextElementSibling;}
sec.classList.toggle('hidden',!any);});
document.querySelectorAll('section.tr').forEach(function(s){var ok=true;
if(only&&s.dataset.verdict==='PASS')ok=false;if(q&&s.dataset.search.indexOf(q)<0)ok=false;
s.style.display=ok?'':'none';});}
document.addEventListener('click',function(ev){var a=ev.target.closest&&ev.target.closest('a.tog');
if(!a)return;ev.preventDefault();a.closest('tbody').classList.toggle('open');});
document.addEventListener('DOMContentLoaded',function(){
if(location.search.indexOf('nonpass')>=0)document.getElementById('nonpass').checked=true;
document.getElementById('nonpass').addEventListener('change',applyFilter);
document.getElementById('q').addEventListener('input',applyFilter);
document.getElementById('expand').addEventListener('click',function(){
var open=this.dataset.open!=='1';this.dataset.open=open?'1':'0';this.textContent=open?'collapse all':'expand all';
document.querySelectorAll('section.tr details').forEach(function(d){if(d.parentNode.style.display!=='none')d.open=open;});});
applyFilter();});
